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

import asyncio
import base64
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.test_deploy_docker import (
    dashboard_conf,
    front_conf,
    nginx_main,
    resolved_compose,
    self_signed,
    stages,
    volume_parts,
)
from xylen.demo_services import show_trades

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "deploy" / "docker"
IMAGES = {"xylen/model-server": "model-server", "xylen/coordinator": "coordinator"}
ORDER = ("init", "paper-exchange", "model-a", "model-b", "model-c", "coordinator")
INIT_TIMEOUT_S = 150.0
HEALTHY_TIMEOUT_S = 90.0
TRADE_TIMEOUT_S = 90.0
DASHBOARD_TOKEN = "compose-dashboard-token"
SECRETS = f"XYLEN_MODEL_TOKEN=compose-model-token\nXYLEN_DASHBOARD_TOKEN={DASHBOARD_TOKEN}\n"
METRICS_USER, METRICS_PASSWORD = "prometheus", "compose-metrics-password"
OPTIONAL_TARGETS = {"xylen-paper-exchange"}  # monitoring/prometheus.yml: no /metrics there yet

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
    project: Path  # the folder docker-compose resolved relative paths against (a copy's)
    ports: dict[tuple[str, int], int] = field(default_factory=dict)
    binds: dict[str, Path] = field(default_factory=dict)  # a bind's source -> what to mount instead

    def port(self, service: str, container_port: int) -> int:
        return self.ports.setdefault((service, container_port), free_port())

    def bind_source(self, source: str) -> Path:
        """A bind mount's host path: the override, else the checkout's file for a project path."""
        if source in self.binds:
            return self.binds[source]
        path = Path(source)
        return REPO / path.relative_to(self.project) if path.is_relative_to(self.project) else path

    def mounts(self, service: str) -> dict[str, Path]:
        """Container path -> host path for the service's volumes, binds and image files."""
        svc = self.services[service]
        out = dict(self.image(service).files)
        for volume in svc.get("volumes", []):
            source, target = volume_parts(volume)
            if source.startswith("/"):
                out[target] = self.bind_source(source)
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
    """Debian's Prometheus on monitoring/'s configuration, as the compose file mounts it, with the
    targets' service names mapped to the stack's ports and a 1 s scrape interval (test speed).
    Returns each target's health once every one but the optional ones is up."""
    exe = shutil.which("prometheus")
    assert exe, "prometheus is needed (make test installs it)"
    etc = folder / "prometheus"
    for bind, target in map(volume_parts, stack.services["prometheus"]["volumes"]):
        if target.startswith("/etc/prometheus/"):
            dest, source = etc / target.removeprefix("/etc/prometheus/"), stack.bind_source(bind)
            if source.is_dir():
                shutil.copytree(source, dest)
            else:
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(source, dest)
    config = yaml.safe_load((etc / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    for job in config["scrape_configs"]:
        for sd in job.get("file_sd_configs", []):
            sd["refresh_interval"] = "1s"
    (etc / "prometheus.yml").write_text(yaml.safe_dump(config))
    expected = 0
    for path in (etc / "targets").glob("*.yml"):
        groups = yaml.safe_load(path.read_text())
        for group in groups:
            group["targets"] = [
                stack.url("prometheus", f"http://{t}").removeprefix("http://") for t in group["targets"]
            ]
            expected += len(group["targets"])
        path.write_text(yaml.safe_dump(groups))
    port = free_port()
    log = folder / "prometheus.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [exe, f"--config.file={etc / 'prometheus.yml'}", f"--storage.tsdb.path={folder / 'tsdb'}",
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
                health = {f"{t['labels']['job']} {t['labels']['instance']}": t["health"] for t in active}
                required = [h for key, h in health.items() if key.split()[0] not in OPTIONAL_TARGETS]
                if len(health) == expected and required and set(required) == {"up"}:
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


@contextlib.contextmanager
def front_proxy(stack: Stack, folder: Path) -> Iterator[tuple[int, int]]:
    """The ``dashboard`` and ``nginx`` services as one Debian nginx process: the dashboard
    container's server block (the committed build, /ws and /api to the coordinator) and
    nginx/xylen-api.conf rendered by the compose stack's script, with a self-signed certificate.
    Yields (HTTP port, HTTPS port)."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    (folder / "logs").mkdir(parents=True)
    dashboard_port = stack.port("dashboard", 8080)
    http_port, https_port = stack.port("nginx", 80), stack.port("nginx", 443)
    upstream = stack.services["dashboard"]["environment"]["XYLEN_COORDINATOR"]  # coordinator:8765
    coordinator = stack.url("dashboard", f"http://{upstream}").removeprefix("http://")
    htpasswd = subprocess.run(
        ["openssl", "passwd", "-apr1", METRICS_PASSWORD], capture_output=True, text=True
    )
    (folder / "htpasswd").write_text(f"{METRICS_USER}:{htpasswd.stdout.strip()}\n")
    env = {
        "XYLEN_DOMAIN": stack.services["nginx"]["environment"]["XYLEN_DOMAIN"],
        "XYLEN_DASHBOARD_UPSTREAM": f"127.0.0.1:{dashboard_port}",
        "XYLEN_METRICS_UPSTREAM": f"127.0.0.1:{stack.ports[('coordinator', 9108)]}",
        "XYLEN_MODEL_METRICS_UPSTREAM": f"127.0.0.1:{stack.ports[('model-a', 8001)]}",
        "XYLEN_HTTP_PORT": str(http_port), "XYLEN_HTTPS_PORT": str(https_port),
        "XYLEN_HTPASSWD": str(folder / "htpasswd"), "XYLEN_NGINX_LOG_DIR": f"{folder}/logs/",
        "XYLEN_ACME_WEBROOT": str(folder / "acme"),
    }  # fmt: skip
    env["XYLEN_LETSENCRYPT_DIR"] = str(self_signed(folder / "letsencrypt", env["XYLEN_DOMAIN"]))
    html = REPO / "coordinator" / "dashboard_dist"
    main = nginx_main(
        folder,
        dashboard_conf(coordinator.removeprefix("http://"), html, dashboard_port),
        front_conf(folder, env),
    )
    proc = subprocess.Popen(
        [nginx, "-p", str(folder), "-c", str(main), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", https_port), timeout=1):
                break
            time.sleep(0.2)
        yield http_port, https_port
    finally:
        proc.terminate()
        proc.wait(10)


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the test's self-signed certificate

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), NoRedirect())
    try:
        with opener.open(urllib.request.Request(url, headers=headers or {}), timeout=10) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


async def first_feed_message(url: str) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=20)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.ws_connect(url, ssl=False) as ws:
        message = await ws.receive(timeout=15)
        assert message.type == aiohttp.WSMsgType.TEXT, message
        data: dict[str, Any] = json.loads(message.data)
        return data


def check_front_proxy(http_port: int, https_port: int) -> dict[str, int]:
    """The page, its API and feed through both proxies; the metrics behind basic auth."""
    base = f"https://127.0.0.1:{https_port}"
    page = fetch(f"{base}/")
    assert page[0] == 200 and b'<div id="root">' in page[1], page
    redirect = fetch(f"http://127.0.0.1:{http_port}/")
    assert redirect[0] == 301, redirect
    api = fetch(f"{base}/api/equity?token={DASHBOARD_TOKEN}")
    assert api[0] == 200 and api[1].lstrip()[:1] in (b"{", b"["), api
    assert fetch(f"{base}/api/equity")[0] == 401  # the coordinator's own check, through both proxies
    assert fetch(f"{base}/metrics")[0] == 401
    auth = {
        "Authorization": "Basic " + base64.b64encode(f"{METRICS_USER}:{METRICS_PASSWORD}".encode()).decode()
    }
    metrics = fetch(f"{base}/metrics", auth)
    assert metrics[0] == 200 and b"xylen_" in metrics[1], metrics[0]
    assert fetch(f"{base}/metrics/model-server", auth)[0] == 200
    feed = asyncio.run(first_feed_message(f"wss://127.0.0.1:{https_port}/ws?token={DASHBOARD_TOKEN}"))
    assert "type" in feed and "ts" in feed, feed
    return {"page": page[0], "api": api[0], "metrics": metrics[0]}


def test_compose_services_as_processes_trade_and_are_scraped(tmp_path: Path, shared_data: Path) -> None:
    started = time.monotonic()
    (tmp_path / "compose").mkdir()
    resolved = resolved_compose(tmp_path / "compose", SECRETS, {"XYLEN_MARKET_DATA": str(shared_data)})
    stack = Stack(resolved["services"], tmp_path / "volumes", tmp_path / "compose")
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

        with front_proxy(stack, tmp_path / "nginx") as (http_port, https_port):
            t0 = time.monotonic()
            answers = check_front_proxy(http_port, https_port)
            figures["nginx"] = time.monotonic() - t0
        health = prometheus_targets_up(stack, tmp_path)
        figures["total"] = time.monotonic() - started

    print("\ncompose services as processes (s): " + ", ".join(f"{k} {v:.1f}" for k, v in figures.items()))
    print(f"journal: votes from {sorted(backends)}, {filled} filled orders, {trades} trades")
    print(f"through nginx (HTTPS) and the dashboard container: {answers}, feed over wss")
    print(f"Prometheus targets: {health}")
    for name, proc, log in running:
        if name != "init":
            assert proc.returncode in (0, -signal.SIGTERM), (
                f"{name} exited {proc.returncode}:\n{log_tail(log)}"
            )
