"""A running `xylen demo` for the tests that need the whole stack (browser, nginx, Prometheus).

:func:`running_demo` starts ``python -m xylen --home HOME demo --data SHARED --symbols BTCUSDT``
in its own session, reads its output until the coordinator is up, and yields a :class:`Demo` with
every URL the demo printed (paper exchange, model servers, metrics, dashboard) and this run's
dashboard token. On exit the demo gets SIGTERM (it stops its children in order), then SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

READY_TIMEOUT_S = 240.0
_EXCHANGE = re.compile(r"^paper exchange: (http://127\.0\.0\.1:\d+)")
_MODEL = re.compile(r"^model server (\w+): (http://127\.0\.0\.1:\d+)")
_METRICS = re.compile(r"^metrics:\s+(http://127\.0\.0\.1:\d+)/metrics")
_WS = re.compile(r"^WebSocket: ws://127\.0\.0\.1:(\d+)/ws\?token=(\S+)")


@dataclass
class Demo:
    """What a running demo printed: its URLs, this run's dashboard token, its output so far."""

    proc: subprocess.Popen[str]
    home: Path
    exchange_url: str = ""
    model_urls: dict[str, str] = field(default_factory=dict)  # backend -> base URL
    metrics_url: str = ""  # base URL of the coordinator's /metrics
    dashboard_port: int = 0
    token: str = ""
    lines: list[str] = field(default_factory=list)

    @property
    def dashboard_url(self) -> str:
        """The dashboard's base URL (the coordinator serves the page, ``/ws`` and ``/api``)."""
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def ready(self) -> bool:
        return bool(
            self.exchange_url and self.metrics_url and self.dashboard_port and len(self.model_urls) >= 3
        )

    def read_lines(self, timeout_s: float) -> list[str]:
        """Output lines that arrive within ``timeout_s`` (also kept in :attr:`lines`)."""
        assert self.proc.stdout is not None
        new: list[str] = []
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            end = time.monotonic() + timeout_s
            while (left := end - time.monotonic()) > 0 and selector.select(left):
                line = self.proc.stdout.readline()
                if not line:
                    break
                new.append(line.rstrip("\n"))
        self.lines.extend(new)
        for line in new:
            self._parse(line)
        return new

    def _parse(self, line: str) -> None:
        if m := _EXCHANGE.match(line):
            self.exchange_url = m.group(1)
        elif m := _MODEL.match(line):
            self.model_urls[m.group(1)] = m.group(2)
        elif m := _METRICS.match(line):
            self.metrics_url = m.group(1)
        elif m := _WS.match(line):
            self.dashboard_port, self.token = int(m.group(1)), m.group(2)


def demo_command(home: Path, shared: Path, *extra: str) -> list[str]:
    """The command line of a one-symbol demo on the shipped data."""
    return [
        sys.executable, "-m", "xylen", "--home", str(home), "demo",
        "--data", str(shared), "--symbols", "BTCUSDT", *extra,
    ]  # fmt: skip


@contextlib.contextmanager
def running_demo(home: Path, shared: Path, *extra: str, env: dict[str, str] | None = None) -> Iterator[Demo]:
    """Start a demo, wait until its coordinator is up (its URLs printed), yield it, stop it."""
    proc = subprocess.Popen(
        demo_command(home, shared, *extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )
    demo = Demo(proc=proc, home=home)
    try:
        end = time.monotonic() + READY_TIMEOUT_S
        while not demo.ready:
            if proc.poll() is not None or time.monotonic() > end:
                demo.read_lines(0.5)
                raise AssertionError("the demo did not come up:\n" + "\n".join(demo.lines[-40:]))
            demo.read_lines(1.0)
        yield demo
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate(timeout=10)
