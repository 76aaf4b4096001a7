"""systemd's notify protocol: the helper's datagrams, and a real model server process under it.

The server process gets ``NOTIFY_SOCKET`` pointing at a datagram socket this test binds (what
systemd does for a ``Type=notify`` unit) and ``WATCHDOG_USEC``; it must say ``READY=1`` only once
``/health`` answers, ping ``WATCHDOG=1`` at half the watchdog period, and say ``STOPPING=1`` on SIGTERM.
"""

from __future__ import annotations

import os
import signal
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from model_server.tests.server_support import start_server
from xylen.sdnotify import sd_notify, watchdog_interval_s


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, Path]]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.2)
    try:
        yield sock, path
    finally:
        sock.close()


def _drain(sock: socket.socket, until: float) -> list[str]:
    messages: list[str] = []
    while time.monotonic() < until:
        try:
            messages.append(sock.recv(4096).decode())
        except TimeoutError:
            continue
    return messages


def test_sd_notify_sends_one_datagram_and_is_a_noop_without_socket(
    notify_socket: tuple[socket.socket, Path],
) -> None:
    sock, path = notify_socket
    assert sd_notify("READY=1", env={"NOTIFY_SOCKET": str(path)})
    assert sock.recv(4096) == b"READY=1"
    assert not sd_notify("READY=1", env={})
    assert not sd_notify("READY=1", env={"NOTIFY_SOCKET": str(path.parent / "absent.sock")})


def test_watchdog_interval_is_half_the_period_for_this_process_only() -> None:
    assert watchdog_interval_s({"WATCHDOG_USEC": "4000000"}) == 2.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid())}) == 2.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "soon"}) is None
    assert watchdog_interval_s({}) is None


def test_model_server_says_ready_pings_watchdog_and_says_stopping(
    tmp_path: Path, notify_socket: tuple[socket.socket, Path]
) -> None:
    sock, path = notify_socket
    env = {"MODEL_TYPE": "river", "NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "400000"}
    server = start_server(tmp_path / "home", env)  # returns once /health answers
    try:
        messages = _drain(sock, time.monotonic() + 1.5)
        ready = [m for m in messages if m.startswith("READY=1")]
        assert len(ready) == 1, messages
        # READY=1 came once the socket listened: /health answered when start_server returned
        with urllib.request.urlopen(f"{server.url}/health", timeout=5) as resp:
            assert resp.status == 200
        pings = messages[messages.index(ready[0]) + 1 :].count("WATCHDOG=1")
        assert pings >= 4, messages  # every 0.2 s for 1.5 s
        assert "STOPPING=1" not in messages
        server.stop()
        assert server.proc.returncode in (0, -signal.SIGTERM), server.output()  # uvicorn re-raises SIGTERM
        assert "STOPPING=1" in _drain(sock, time.monotonic() + 0.5)
    finally:
        server.stop()


def test_model_server_without_notify_socket_runs_as_before(tmp_path: Path) -> None:
    env = {"MODEL_TYPE": "river", "NOTIFY_SOCKET": "", "WATCHDOG_USEC": ""}
    server = start_server(tmp_path / "home", env)
    try:
        with urllib.request.urlopen(f"{server.url}/health", timeout=5) as resp:
            assert resp.status == 200
    finally:
        server.stop()
    assert server.proc.returncode in (0, -signal.SIGTERM), server.output()  # uvicorn re-raises SIGTERM
    assert "sd_notify" not in server.output()
