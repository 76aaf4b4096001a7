"""systemd's notify protocol (``sd_notify(3)``) without a library: one datagram per message.

A service started by a ``Type=notify`` unit finds ``NOTIFY_SOCKET`` in its environment and sends
``READY=1`` once it serves, ``WATCHDOG=1`` at least every ``WATCHDOG_USEC`` / 2 microseconds while it
is healthy (``WatchdogSec=``), and ``STOPPING=1`` when it starts to shut down.  Outside systemd
(``NOTIFY_SOCKET`` unset) every call is a no-op returning False, so the same code runs in a
terminal, under launchd or in a container.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping

logger = logging.getLogger(__name__)

SOCKET_TIMEOUT_S = 0.5


def sd_notify(message: str, env: Mapping[str, str] | None = None) -> bool:
    """Send ``message`` to ``NOTIFY_SOCKET`` (False when unset or unreachable; never raises)."""
    address = (os.environ if env is None else env).get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.settimeout(SOCKET_TIMEOUT_S)
            sock.sendto(message.encode(), address)
    except OSError as exc:
        logger.warning("sd_notify %r failed: %s", message, exc)
        return False
    return True


def watchdog_interval_s(env: Mapping[str, str] | None = None) -> float | None:
    """Half of ``WATCHDOG_USEC`` in seconds (systemd's advice), None without a watchdog.

    ``WATCHDOG_PID``, when set, names the process the watchdog is meant for: another process
    (a child that inherited the environment) gets None.
    """
    environ = os.environ if env is None else env
    usec = environ.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) <= 0:
        return None
    pid = environ.get("WATCHDOG_PID", "")
    if pid.isdigit() and int(pid) != os.getpid():
        return None
    return int(usec) / 2e6


async def watchdog_loop(interval_s: float) -> None:
    """``WATCHDOG=1`` every ``interval_s`` while the event loop runs (a stalled loop stops the pings)."""
    while True:
        sd_notify("WATCHDOG=1")
        await asyncio.sleep(interval_s)


__all__ = ["sd_notify", "watchdog_interval_s", "watchdog_loop"]
