"""Ctrl-C sent to a real ``xylen`` command process, for the tests of the commands that must stop at
once (``backtest``, ``optimize``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]
# SIGINT as a terminal sends it, whatever the test runner's own disposition
LAUNCHER = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler);"
    "from xylen.cli.main import main; sys.exit(main(sys.argv[1:]))"
)


def wait_for(
    found: Callable[[], T | None], proc: subprocess.Popen[str], what: str, limit_s: float = 300
) -> T:
    """What ``found`` returns once it is not None (polled while ``proc`` runs, at most ``limit_s``)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        value = found()
        if value is not None:
            return value
        if proc.poll() is not None:
            raise AssertionError(f"the command ended before {what}: {proc.communicate()}")
        time.sleep(0.05)
    raise AssertionError(f"no {what} within {limit_s:g} s")


def interrupted(
    args: Sequence[str], *, cwd: Path, tmpdir: Path, ready: Callable[[subprocess.Popen[str]], T]
) -> tuple[subprocess.Popen[str], T, str, str]:
    """Run ``xylen args`` (``TMPDIR`` = ``tmpdir``), send SIGINT once ``ready(proc)`` has returned
    (its value is handed back), and wait at most 15 s for the process to end; ``(proc, ready's
    value, stdout, stderr)``."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(tmpdir)}
    with subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, env=env,
    ) as proc:  # fmt: skip
        value = ready(proc)
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError("still running 15 s after Ctrl-C") from None
    return proc, value, out, err
