"""``docker-compose.yml``'s Xylen services, started as plain processes, trade end to end.

No container engine runs on these machines, so this is the nearest real thing to
``docker-compose up``: the compose file is resolved by Debian's ``docker-compose config`` (with
``XYLEN_MARKET_DATA`` pointing at the shared market data and a ``secrets.env`` of test tokens),
and each Xylen service (``init``, ``paper-exchange``, the three model servers, ``coordinator``)
runs as a process with the command and environment compose gives it: the image's ``ENTRYPOINT``
and ``ENV`` read from its Dockerfile, then the service's ``entrypoint``, ``command`` and
``environment``.  What a container would see is mapped onto this machine:

- a path inside a container becomes the host folder of the volume or bind mount holding it (one
  temporary folder per named volume, shared by the services that mount it) or, for files the
  Dockerfile copies into the image, the file in this checkout;
- a service's hostname becomes 127.0.0.1 and each (service, container port) a free port, in the
  commands (``--host 0.0.0.0 --port 8001``) and in the coordinator's mounted config;
- ``python`` is this checkout's interpreter.

Services start in ``depends_on`` order: ``init`` must exit 0 (``service_completed_successfully``);
the others must pass the compose file's own ``healthcheck`` command (run as a process) before
their dependants start (``service_healthy``).  The coordinator's config is the compose one with
``xylen.demo_services.show_trades`` applied, so that the demo's weak models trade.  Then: every
server's votes reach the journal, orders fill on the paper exchange and a trade closes, and
Debian's Prometheus, with a config generated for these ports, scrapes every target up.

Not covered here (they need images this machine cannot build or run): the dashboard's nginx
image, Grafana, the nginx front proxy, read-only root filesystems, memory limits, and Docker's
own networking and restart policies.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.test_deploy_docker import resolved_compose, stages, volume_parts
from xylen.demo_services import show_trades

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "deploy" / "docker"
IMAGES = {"xylen/model-server": "model-server", "xylen/coordinator": "coordinator"}
ORDER = ("init", "paper-exchange", "model-a", "model-b", "model-c", "coordinator")
INIT_TIMEOUT_S = 150.0
HEALTHY_TIMEOUT_S = 90.0
TRADE_TIMEOUT_S = 90.0
SECRETS = "XYLEN_MODEL_TOKEN=compose-model-token\nXYLEN_DASHBOARD_TOKEN=compose-dashboard-token\n"

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Image:
    """What a Dockerfile's final stage gives a container: entrypoint, environment, copied files."""

    entrypoint: list[str]
    env: dict[str, str]
    files: dict[str, Path]  # path in the image -> file in this checkout

    @classmethod
    def read(cls, dockerfile: Path) -> Image:
        final = stages(dockerfile)[-1]
        entrypoint: list[str] = []
        env: dict[str, str] = {}
        files: dict[str, Path] = {}
        for line in final:
            word, _, rest = line.partition(" ")
            if word == "ENTRYPOINT":
                entrypoint = json.loads(rest)
            elif word == "ENV":
                env.update(dict(re.findall(r"(\w+)=(\S+)", rest)))
            elif word == "COPY" and not rest.startswith("--from"):
                src, dest = rest.split()
                files[dest] = REPO / src
        return cls(entrypoint, env, files)


@dataclass
class Stack:
    """The compose services mapped onto this machine."""

    services: dict[str, Any]
    volumes: Path
    ports: dict[tuple[str, int], int] = field(default_factory=dict)
    binds: dict[str, Path] = field(default_factory=dict)  # a bind's source -> what to mount instead

    def port(self, service: str, container_port: int) -> int:
        return self.ports.setdefault((service, container_port), free_port())

    def mounts(self, service: str) -> dict[str, Path]:
        """Container path -> host path for the service's volumes, binds and image files."""
        svc = self.services[service]
        out = dict(self.image(service).files)
        for volume in svc.get("volumes", []):
            source, target = volume_parts(volume)
            if source.startswith("/"):
                out[target] = self.binds.get(source, Path(source))
            else:
                out[target] = self.volumes / source
                out[target].mkdir(parents=True, exist_ok=True)
        return out

    def image(self, service: str) -> Image:
        name = self.services[service]["image"].split(":")[0]
        return Image.read(DOCKER / f"{IMAGES[name]}.Dockerfile")

    def host_path(self, service: str, value: str) -> str:
        """``value`` with a container path replaced by its host path (longest mount first)."""
        for target, source in sorted(self.mounts(service).items(), key=lambda kv: -len(kv[0])):
            if value == target or value.startswith(target + "/"):
                return str(source) + value[len(target) :]
        return value

    def translate(self, service: str, args: list[str]) -> list[str]:
        out: list[str] = []
        for i, arg in enumerate(args):
            if arg == "python":
                arg = sys.executable
            elif i > 0 and args[i - 1] == "--host":
                arg = "127.0.0.1"
            elif i > 0 and args[i - 1] == "--port":
                arg = str(self.port(service, int(arg)))
            out.append(self.host_path(service, arg))
        return out

    def command(self, service: str) -> list[str]:
        svc = self.services[service]
        entrypoint = svc.get("entrypoint") or self.image(service).entrypoint
        return self.translate(service, [*entrypoint, *(svc.get("command") or [])])

    def environment(self, service: str) -> dict[str, str]:
        env = {
            **self.image(service).env,
            **{k: str(v) for k, v in self.services[service]["environment"].items()},
        }
        env = {k: self.host_path(service, v) for k, v in env.items()}
        env["PATH"] = f"{Path(sys.executable).parent}:/usr/bin:/bin"
        env["PYTHONPATH"] = str(REPO)
        for key in ("XYLEN_SHARED_DATA", "LANG", "TZ"):
            if key in os.environ:
                env[key] = os.environ[key]
        return env

    def workdir(self, service: str) -> Path:
        """The image's WORKDIR (/var/lib/xylen) when the service mounts it, else a scratch folder."""
        mounted = self.host_path(service, "/var/lib/xylen")
        if mounted != "/var/lib/xylen":
            return Path(mounted)
        scratch = self.volumes.parent / f"workdir-{service}"
        scratch.mkdir(parents=True, exist_ok=True)
        return scratch

    def healthcheck(self, service: str) -> list[str]:
        test = self.services[service]["healthcheck"]["test"]
        assert test[0] == "CMD", test
        return [self.url(service, arg) for arg in self.translate(service, test[1:])]

    def url(self, service: str, text: str) -> str:
        """``http://<service or 127.0.0.1>:<container port>`` -> ``http://127.0.0.1:<host port>``."""

        def repl(match: re.Match[str]) -> str:
            host, port = match.group(1), int(match.group(2))
            owner = service if host in {"127.0.0.1", "localhost", "0.0.0.0"} else host
            if owner not in self.services:
                return match.group(0)
            return f"http://127.0.0.1:{self.port(owner, port)}"

        return re.sub(r"http://([\w.-]+):(\d+)", repl, text)


@contextlib.contextmanager
def processes() -> Iterator[list[tuple[str, subprocess.Popen[bytes], Path]]]:
    running: list[tuple[str, subprocess.Popen[bytes], Path]] = []
    try:
        yield running
    finally:
        for _, proc, _ in reversed(running):  # the coordinator first, as compose stops dependants first
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(5)


def log_tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def wait_healthy(stack: Stack, service: str, proc: subprocess.Popen[bytes], log: Path) -> float:
    started = time.monotonic()
    check = stack.healthcheck(service)
    while time.monotonic() - started < HEALTHY_TIMEOUT_S:
        assert proc.poll() is None, f"{service} exited {proc.returncode}:\n{log_tail(log)}"
        if subprocess.run(check, capture_output=True, timeout=30, check=False).returncode == 0:
            return time.monotonic() - started
        time.sleep(0.5)
    raise AssertionError(f"{service} not healthy after {HEALTHY_TIMEOUT_S:.0f} s:\n{log_tail(log)}")


def coordinator_config(stack: Stack, source: Path, target: Path) -> None:
    """The compose coordinator config, hostnames and ports mapped, with ``show_trades`` applied."""
    config = yaml.safe_load(source.read_text())
    config["exchange"]["paper_url"] = stack.url("coordinator", config["exchange"]["paper_url"])
    for server in config["model_servers"]:
        server["url"] = stack.url("coordinator", server["url"])
    monitoring, dashboard = config["monitoring"], config["dashboard"]
    monitoring["metrics_host"] = dashboard["host"] = "127.0.0.1"
    monitoring["metrics_port"] = stack.port("coordinator", monitoring["metrics_port"])
    dashboard["port"] = stack.port("coordinator", dashboard["port"])
    config["logging"]["format"] = "text"
    target.write_text(yaml.safe_dump(show_trades(config)))


def journal(db: Path) -> tuple[set[str], int, int]:
    """(backends with an ok vote, filled orders, closed trades) in the coordinator's journal."""
    if not db.exists():
        return set(), 0, 0
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
        try:
            backends = {
                r[0] for r in conn.execute("SELECT DISTINCT backend FROM model_predictions WHERE status='ok'")
            }
            filled = conn.execute("SELECT COUNT(*) FROM orders WHERE state='FILLED'").fetchone()[0]
            trades = conn.execute("SELECT COUNT(*) FROM trades").fetchone()[0]
        except sqlite3.OperationalError:  # not migrated yet
            return set(), 0, 0
    return backends, int(filled), int(trades)


def prometheus_targets_up(stack: Stack, folder: Path) -> dict[str, str]:
    """Run Debian's Prometheus on the stack's real ports; the health of each target once all are up."""
    exe = shutil.which("prometheus")
    assert exe, "prometheus is needed (make test installs it)"
    targets = {
        "coordinator": f"127.0.0.1:{stack.ports[('coordinator', 9108)]}",
        **{
            name: f"127.0.0.1:{stack.ports[(name, 8001)]}"
            for name in ("model-a", "model-b", "model-c")
        },
    }
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [
            {"job_name": name, "static_configs": [{"targets": [t]}]} for name, t in targets.items()
        ],
    }
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = folder / "prometheus.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [exe, f"--config.file={folder / 'prometheus.yml'}", f"--storage.tsdb.path={folder / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    health: dict[str, str] = {}
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, log_tail(log)
            with contextlib.suppress(OSError, ValueError):
                url = f"http://127.0.0.1:{port}/api/v1/targets"
                with urllib.request.urlopen(url, timeout=2) as resp:
                    active = json.load(resp)["data"]["activeTargets"]
                health = {t["labels"]["job"]: t["health"] for t in active}
                if len(health) == len(targets) and set(health.values()) == {"up"}:
                    return health
            time.sleep(0.5)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    raise AssertionError(f"Prometheus targets not all up: {health}\n{log_tail(log)}")


def test_compose_services_as_processes_trade_and_are_scraped(tmp_path: Path, shared_data: Path) -> None:
    started = time.monotonic()
    (tmp_path / "compose").mkdir()
    resolved = resolved_compose(tmp_path / "compose", SECRETS, {"XYLEN_MARKET_DATA": str(shared_data)})
    stack = Stack(resolved["services"], tmp_path / "volumes")
    # the coordinator's mounted config, mapped onto this machine
    config_bind = next(
        s
        for s, t in map(volume_parts, stack.services["coordinator"]["volumes"])
        if t == "/etc/xylen/config.yaml"
    )
    assert Path(config_bind).name == "coordinator.yaml"
    mapped_config = tmp_path / "coordinator.yaml"
    stack.binds[config_bind] = mapped_config
    # ports first (the config names the servers' ports before they start)
    for name in ORDER[1:-1]:
        stack.command(name)
    coordinator_config(stack, DOCKER / "coordinator.yaml", mapped_config)
    logs = tmp_path / "logs"
    logs.mkdir()
    figures: dict[str, float] = {}

    with processes() as running:
        for name in ORDER:
            svc = stack.services[name]
            for dep, rule in svc.get("depends_on", {}).items():
                assert dep in figures, f"{name} depends on {dep}, not started yet"
                assert rule["condition"] in {"service_completed_successfully", "service_healthy"}
            log = logs / f"{name}.log"
            t0 = time.monotonic()
            with open(log, "wb") as out:
                proc = subprocess.Popen(
                    stack.command(name), env=stack.environment(name), stdout=out, stderr=subprocess.STDOUT,
                    cwd=stack.workdir(name), start_new_session=True,
                )  # fmt: skip
            running.append((name, proc, log))
            if name == "init":
                try:
                    code = proc.wait(INIT_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    pytest.fail(f"init did not finish in {INIT_TIMEOUT_S:.0f} s:\n{log_tail(log)}")
                assert code == 0, f"init exited {code}:\n{log_tail(log)}"
                figures[name] = time.monotonic() - t0
            else:
                figures[name] = wait_healthy(stack, name, proc, log)

        db = Path(stack.host_path("coordinator", "/var/lib/xylen")) / "xylen.db"
        deadline = time.monotonic() + TRADE_TIMEOUT_S
        backends: set[str] = set()
        filled = trades = 0
        while time.monotonic() < deadline:
            for name, proc, log in running[1:]:
                assert proc.poll() is None, f"{name} exited {proc.returncode}:\n{log_tail(log)}"
            backends, filled, trades = journal(db)
            if backends == {"lightgbm", "onnx", "river"} and filled >= 2 and trades >= 1:
                break
            time.sleep(1.0)
        figures["first trade"] = time.monotonic() - t0
        assert backends == {"lightgbm", "onnx", "river"}, (
            f"votes from {backends}:\n{log_tail(logs / 'coordinator.log')}"
        )
        assert filled >= 2 and trades >= 1, (
            f"{filled} filled, {trades} trades:\n{log_tail(logs / 'coordinator.log')}"
        )

        health = prometheus_targets_up(stack, tmp_path)
        figures["total"] = time.monotonic() - started

    print("\ncompose services as processes (s): " + ", ".join(f"{k} {v:.1f}" for k, v in figures.items()))
    print(f"journal: votes from {sorted(backends)}, {filled} filled orders, {trades} trades")
    print(f"Prometheus targets: {health}")
    for name, proc, log in running:
        if name != "init":
            assert proc.returncode in (0, -signal.SIGTERM), (
                f"{name} exited {proc.returncode}:\n{log_tail(log)}"
            )
