"""The services behind ``xylen demo``: every one a child process, watched, and stopped cleanly.

:func:`run_services` trains (or reuses) the demo's LightGBM model with ``xylen train``, then starts
the paper exchange, three model servers (LightGBM, ONNX, River) and the coordinator, each as
``sys.executable -m xylen --home HOME ...`` on free 127.0.0.1 ports, each waited for over HTTP, each
logging to ``<home>/logs/<name>.log``.  While the coordinator beats, one line per beat is printed
from its journal (``<home>/xylen.db``).  Ctrl-C/SIGTERM or the end of ``duration`` stops the children
(coordinator first): SIGTERM, a bounded wait, then SIGKILL.  A failed step stops them too and raises
:class:`~xylen.errors.XylenError` with a one-line reason.

Children run in their own sessions (Ctrl-C reaches only the demo, which stops them in order).  So that
they do not outlive a demo that is killed outright (SIGKILL, OOM killer), on Linux each child asks the
kernel for SIGTERM when its parent dies (``prctl(PR_SET_PDEATHSIG)``) and, in case the parent died
while it was being spawned, checks that its parent is still the one that started it.  The signal
follows the *thread* that started the child, so start children from a thread that lives as long as
they should (the demo's main thread).  macOS (and other systems) have no equivalent: there a killed
demo leaves its children running, to be stopped by hand (their pids are printed).

The pieces (:class:`Children`, :func:`start_paper_exchange`, :func:`start_model_server`,
:func:`start_coordinator`, :func:`wait_ready`, :func:`ensure_model`, :func:`demo_config`) are also
what the end-to-end test (``tests/test_e2e_system.py``) starts its processes with.

Time: the paper exchange replays at :data:`SPEED` x wall time and the coordinator runs the
``accelerated`` clock at the same speed with a 5-minute beat, so a beat passes every
``300 / SPEED`` wall seconds (1.5 s).  Only the standard library and PyYAML are used here.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import signal
import socket
import subprocess  # nosec B404 # starts this package's own commands with a fixed argv
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from typing import IO, Any

import yaml

from xylen.demo_beats import BeatReader
from xylen.errors import XylenError
from xylen.paths import Home

SPEED = 200.0  # replay and clock speed: 5 minutes of market time per 1.5 s of wall time
BEAT_SECONDS = 300.0  # one beat per 5m candle, in clock seconds
STOP_TIMEOUT_S = 10.0  # SIGTERM -> SIGKILL
MODEL_DIR = "demo-lgbm"
SECOND_MODEL_DIR = "demo-lgbm-2h"  # a second model, served over ONNX: another horizon, another seed
SECOND_MODEL_ARGS = ("--horizon-bars", "24", "--seed", "7")
RIVER_DIR = "demo-river"
SERVERS = (("lgbm", "lightgbm"), ("onnx", "onnx"), ("river", "river"))
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

Print = Callable[[str], None]


class Stop(Exception):
    """SIGINT/SIGTERM arrived: stop everything and exit 0."""


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (bound to 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Child:
    """One child process and its log file."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes]

    def last_line(self) -> str:
        """The last non-empty line of the log (for a failure's one-line reason)."""
        try:
            lines = [s for s in self.log_path.read_text(errors="replace").splitlines() if s.strip()]
        except OSError:
            return ""
        return lines[-1].strip()[:300] if lines else ""

    def check_alive(self) -> None:
        code = self.proc.poll()
        if code is not None:
            raise XylenError(
                f"{self.name} exited with status {code}: {self.last_line()} (see {self.log_path})"
            )


def parent_death_signal(sig: signal.Signals = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` making the child receive ``sig`` when this process dies (Linux; else None).

    ``prctl`` is looked up here, in the parent, so the child only makes the call.  The check that
    ``getppid()`` is still this process closes the race of a parent dying before ``prctl`` ran (the
    child would then never get the signal): the child ends itself at once, before ``exec``.  The
    signal's disposition is reset first, so a handler inherited from the parent cannot swallow it.
    """
    if not sys.platform.startswith("linux"):
        return None  # macOS has no PR_SET_PDEATHSIG: a killed demo leaves its children running
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    number = ctypes.c_ulong(int(sig))

    def setup() -> None:  # in the child between fork and exec: three system calls, no locks
        # a handler inherited from the parent (the demo's Stop) would swallow the signal before exec
        signal.signal(sig, signal.SIG_DFL)
        prctl(PR_SET_PDEATHSIG, number, ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0))
        if os.getppid() != parent:  # the parent died before prctl: no signal will come, so end now
            os.kill(os.getpid(), sig)

    return setup


@dataclass
class Children:
    """Start children in their own sessions (Ctrl-C reaches only us) and stop them in reverse order.

    Each child runs ``python -m xylen --home HOME ARGS`` with ``env``, logs to ``<home>/logs/<name>.log``
    (appended) and, on Linux, gets SIGTERM if this process dies (module docstring).
    """

    home: Home
    env: dict[str, str]
    children: list[Child] = field(default_factory=list)

    def start(self, name: str, args: list[str]) -> Child:
        logs = self.home.root / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log_path = logs / f"{name}.log"
        log = log_path.open("ab")
        log.write(f"\n--- xylen demo {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC ---\n".encode())
        log.flush()
        command = [sys.executable, "-m", "xylen", "--home", str(self.home.root), *args]
        try:
            proc = subprocess.Popen(  # nosec B603 # argv of this interpreter and package, no shell
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
                preexec_fn=parent_death_signal(),
            )
        except BaseException:
            log.close()
            raise
        child = Child(name, proc, log_path, log)
        self.children.append(child)
        return child

    def forget(self, child: Child) -> None:
        """Stop watching ``child`` (it has exited or been killed and waited for): close its log."""
        if child in self.children:
            self.children.remove(child)
        child.log.close()

    def stop_all(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM each child (newest first), wait up to ``timeout_s`` for all, then SIGKILL."""
        for child in reversed(self.children):
            if child.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.send_signal(signal.SIGTERM)
            if child.name == "coordinator":  # let it finish its beat before the others go
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.proc.wait(timeout_s)
        deadline = time.monotonic() + timeout_s
        for child in self.children:
            try:
                child.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait(5.0)
            child.log.close()
        self.children.clear()


def http_get(url: str, timeout_s: float = 2.0) -> tuple[int, bytes]:
    """GET ``url``: (status, body); (0, b"") when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # nosec B310 # our own URLs
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), b""
    except (OSError, ValueError):
        return 0, b""


def wait_ready(child: Child, url: str, timeout_s: float, ok: Callable[[int, bytes], bool]) -> None:
    """Poll ``url`` until ``ok(status, body)``; the child dying or the timeout raises XylenError."""
    deadline = time.monotonic() + timeout_s
    while True:
        child.check_alive()
        status, body = http_get(url)
        if ok(status, body):
            return
        if time.monotonic() > deadline:
            raise XylenError(
                f"{child.name} did not answer {url} within {timeout_s:.0f} s (see {child.log_path})"
            )
        time.sleep(0.2)


def health_ok(status: int, body: bytes) -> bool:
    """A model server's ``/health``: up with its model loaded."""
    if status != 200:
        return False
    try:
        health = json.loads(body)
    except ValueError:
        return False
    return bool(health.get("model_loaded")) and health.get("status") == "ok"


def find_model(folder: Path) -> Path | None:
    """The newest complete model directory (metadata.json, model.txt, model.onnx) under ``folder``."""
    if not folder.is_dir():
        return None
    done = [
        p
        for p in folder.iterdir()
        if all((p / name).is_file() for name in ("metadata.json", "model.txt", "model.onnx"))
    ]
    return max(done, default=None)


def ensure_model(
    children: Children,
    symbol: str,
    out: Print,
    folder_name: str = MODEL_DIR,
    extra: Sequence[str] = (),
    what: str = "a small LightGBM model",
) -> Path:
    """Reuse ``<home>/models/<folder_name>/<version>``, else train one with ``xylen train`` (small,
    fast; ``extra``: more training arguments, e.g. another horizon)."""
    folder = children.home.root / "models" / folder_name
    found = find_model(folder)
    if found is not None:
        out(f"model: reusing {found}")
        return found
    target = folder / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out(f"model: training {what} on {symbol} 5m into {target} (log: logs/train.log) ...")
    started = time.monotonic()
    child = children.start(
        "train",
        ["train", "--symbol", symbol, "--out", str(target), "--profile", "8gb", "--folds", "2",
         "--rounds", "60", "--max-rows", "40000", "--threads", "2", *extra],
    )  # fmt: skip
    code = child.proc.wait()
    children.forget(child)
    if code != 0 or find_model(folder) is None:
        raise XylenError(f"training failed (status {code}): {child.last_line()} (see {child.log_path})")
    out(f"model: trained in {time.monotonic() - started:.1f} s")
    return target


def start_paper_exchange(
    children: Children, symbol: str, speed: float = SPEED, port: int | None = None, *extra: str
) -> tuple[Child, int]:
    """``xylen paper-exchange`` replaying ``symbol`` at ``speed`` on ``port`` (default: a free one)."""
    port = free_port() if port is None else port
    child = children.start(
        "paper-exchange",
        ["paper-exchange", "--port", str(port), "--speed", f"{speed:g}", "--symbols", symbol, *extra],
    )
    return child, port


def model_path(home: Home, backend: str) -> Path:
    """What a demo model server of ``backend`` serves: the trained directory's folder, or River's."""
    return home.models / (RIVER_DIR if backend == "river" else MODEL_DIR)


def start_model_server(
    children: Children, name: str, backend: str, port: int | None = None, model: Path | None = None
) -> tuple[Child, int]:
    """``xylen model-server`` named ``model-server-<name>`` serving ``backend`` on ``port``
    (``model``: the models folder to serve, default :func:`model_path`)."""
    port = free_port() if port is None else port
    path = model_path(children.home, backend) if model is None else model
    path.mkdir(parents=True, exist_ok=True)  # River starts from an empty folder and learns online
    child = children.start(
        f"model-server-{name}",
        ["model-server", "--host", "127.0.0.1", "--port", str(port), "--model", str(path),
         "--model-type", backend],
    )  # fmt: skip
    return child, port


def start_coordinator(children: Children, config_path: Path) -> Child:
    """``xylen run --config CONFIG`` (the coordinator) as the child ``coordinator``."""
    return children.start("coordinator", ["run", "--config", str(config_path)])


SHOW_TRADES_NOTE = (
    "--show-trades: the coordinator prices no fees or slippage and needs no minimum edge, so it trades"
    " on edges that would not pay for real costs (the paper exchange still charges them)"
)
HOLD_NOTE = (
    "the ensemble trades only on positive expected value after fees and slippage: with these models"
    " most beats HOLD (LOW_EDGE / NON_POSITIVE_EV); `xylen demo --show-trades` exercises the order path"
)


def show_trades(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` made to trade on the demo's weak models: the coordinator's cost model is zero
    (fees and slippage 0 bps; the paper exchange still charges its own), ``min_edge`` is 0 with a
    wide disagreement gate, sizing is a fixed 1% at the stop, and the loss cooldown and breakers are
    widened so that a losing streak in the replay does not stop the trading.  For seeing the order
    path work (entries, brackets, closes, the trades table), never for judging a strategy."""
    config["ensemble"] = {"quorum": 1, "min_edge": 0.0, "max_disagreement": 0.5}
    config["risk"].update(
        sizing="fixed_fraction",
        fixed_fraction=0.01,
        cooldown_after_loss_seconds=0.0,
        breaker_consecutive_losses=1000,
        daily_loss_limit_pct=50.0,
        daily_loss_limit_usd=5000.0,
        max_orders_per_minute=100,
    )
    config.setdefault("trading", {}).update(
        horizon_minutes=10, taker_fee_bps=0.0, maker_fee_bps=0.0, slippage_bps=0.0
    )
    return config


def demo_config(
    symbol: str,
    exchange_port: int,
    servers: dict[str, int],
    metrics_port: int,
    dashboard_port: int,
    *,
    trade_freely: bool = False,
) -> dict[str, Any]:
    """The coordinator's config for the demo (written to ``<home>/demo-config.yaml``);
    ``trade_freely``: :func:`show_trades` applied."""
    config = {
        "exchange": {"mode": "paper", "paper_url": f"http://127.0.0.1:{exchange_port}"},
        "market": {"symbols": [symbol]},
        "heartbeat": {
            "interval_seconds": BEAT_SECONDS,
            "deadline_seconds": BEAT_SECONDS * 0.8,  # clock seconds; the real deadline is 0.8 x 1.5 s
            "clock": "accelerated",
            "speed": SPEED,
        },
        "model_servers": [
            {"id": f"demo-{name}", "url": f"http://127.0.0.1:{port}", "timeout_ms": 1000}
            for name, port in servers.items()
        ],
        "risk": {"max_snapshot_age_seconds": 900.0},  # clock seconds: one 5m candle plus slack
        "monitoring": {"metrics_host": "127.0.0.1", "metrics_port": metrics_port},
        "dashboard": {
            "enabled": True,
            "host": "127.0.0.1",
            "port": dashboard_port,
            "require_token": True,  # nosec B105 # a boolean flag, not a password
        },
        "logging": {"level": "INFO", "format": "text"},
    }
    return show_trades(config) if trade_freely else config


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise :class:`Stop` in the main thread while inside the block."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Stop(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_services(
    home: Home, symbol: str, duration_s: float | None, out: Print, *, trade_freely: bool = False
) -> int:
    """Start everything, print the beats until ``duration_s`` (None: until Ctrl-C), stop; exit 0.

    ``trade_freely``: the coordinator runs with :func:`show_trades`'s config.

    A failed step stops the children and raises :class:`XylenError` (one line, exit 1).
    """
    env = dict(os.environ)
    env.pop("XYLEN_HOME", None)
    # tokens set in the environment are kept (tests and scripts know them); otherwise this run's own
    env.update(
        XYLEN_MODEL_TOKEN=env.get("XYLEN_MODEL_TOKEN") or secrets.token_urlsafe(24),
        XYLEN_DASHBOARD_TOKEN=env.get("XYLEN_DASHBOARD_TOKEN") or secrets.token_urlsafe(24),
        PYTHONUNBUFFERED="1",
    )
    children = Children(home, env)
    reader: BeatReader | None = None
    try:
        with _stop_on_signals():
            # Two different LightGBM models (1-hour and 2-hour horizons), one over LightGBM and one
            # over ONNX, and River: three models for the ensemble to weigh, not one counted twice.
            models = {
                "lgbm": ensure_model(children, symbol, out),
                "onnx": ensure_model(
                    children, symbol, out, SECOND_MODEL_DIR, SECOND_MODEL_ARGS,
                    "a second LightGBM model (2-hour horizon, another seed)",
                ),
            }  # fmt: skip
            exchange, exchange_port = start_paper_exchange(children, symbol)
            servers: dict[str, int] = {}
            started: list[tuple[Child, int]] = []
            for name, backend in SERVERS:
                served = models.get(name)
                child, port = start_model_server(
                    children, name, backend, model=None if served is None else served.parent
                )
                servers[name] = port
                started.append((child, port))
            wait_ready(exchange, f"http://127.0.0.1:{exchange_port}/fapi/v1/ping", 60, lambda s, _b: s == 200)
            out(
                f"paper exchange: http://127.0.0.1:{exchange_port} replaying {symbol} 5m at {SPEED:g}x"
                f" (pid {exchange.proc.pid})"
            )
            for (child, port), (name, backend) in zip(started, SERVERS, strict=True):
                wait_ready(child, f"http://127.0.0.1:{port}/health", 90, health_ok)
                served = models.get(name)
                source = "River, learning online" if served is None else f"{served.parent.name}/{served.name}"
                out(f"model server {backend}: http://127.0.0.1:{port} ({source}, pid {child.proc.pid})")
            metrics_port, dashboard_port = free_port(), free_port()
            config_path = home.root / "demo-config.yaml"
            config = demo_config(
                symbol, exchange_port, servers, metrics_port, dashboard_port, trade_freely=trade_freely
            )
            config_path.write_text(
                "# written by `xylen demo` on every run\n" + yaml.safe_dump(config, sort_keys=False)
            )
            reader = BeatReader.at_end(home.database)
            coordinator = start_coordinator(children, config_path)
            wait_ready(coordinator, f"http://127.0.0.1:{metrics_port}/metrics", 90, lambda s, _b: s == 200)
            out(f"coordinator: pid {coordinator.proc.pid}, config {config_path}, journal {home.database}")
            out(f"metrics:   http://127.0.0.1:{metrics_port}/metrics")
            token = env["XYLEN_DASHBOARD_TOKEN"]
            out(f"dashboard: http://127.0.0.1:{dashboard_port}/?token={token}")
            out(f"WebSocket: ws://127.0.0.1:{dashboard_port}/ws?token={token} (this run's token)")
            if env.get("XYLEN_DASHBOARD_ADMIN_TOKEN"):
                out("dashboard controls: on (XYLEN_DASHBOARD_ADMIN_TOKEN is set)")
            out(f"logs:      {home.root / 'logs'}/*.log")
            until = "Ctrl-C to stop" if duration_s is None else f"for {duration_s:g} s"
            out(SHOW_TRADES_NOTE if trade_freely else HOLD_NOTE)
            out(f"beating every {BEAT_SECONDS / SPEED:g} s (5 minutes of replay each), {until}:")
            end = None if duration_s is None else time.monotonic() + duration_s
            while end is None or time.monotonic() < end:
                for line in reader.new_lines():
                    out(line)
                for child in children.children:
                    child.check_alive()
                time.sleep(0.25)
            out(f"{duration_s:g} s done: stopping")
    except Stop as stop:
        out(f"{stop}: stopping")
    finally:
        with _ignore_signals():
            children.stop_all()
            if reader is not None:
                for line in reader.new_lines():
                    out(line)
                reader.close()
    out("all services stopped")
    return 0


@contextlib.contextmanager
def _ignore_signals() -> Iterator[None]:
    """A second Ctrl-C does not interrupt the clean stop."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


__all__ = [
    "SERVERS",
    "BeatReader",
    "Child",
    "Children",
    "demo_config",
    "ensure_model",
    "free_port",
    "health_ok",
    "http_get",
    "model_path",
    "parent_death_signal",
    "run_services",
    "show_trades",
    "start_coordinator",
    "start_model_server",
    "start_paper_exchange",
    "wait_ready",
]
