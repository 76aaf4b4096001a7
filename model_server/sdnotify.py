"""The model server's side of systemd's notify protocol (:mod:`xylen.sdnotify`).

:class:`NotifyingServer` is uvicorn's server that says ``READY=1`` once its sockets listen (after
the lifespan has loaded the first model, so "ready" means "serving") and ``STOPPING=1`` when the
shutdown begins.  The ``WATCHDOG=1`` pings come from a task of the app's supervisor
(:func:`watchdog_task`), so a stalled event loop stops them and systemd restarts the server.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable

import uvicorn

from xylen.sdnotify import sd_notify, watchdog_interval_s, watchdog_loop


class NotifyingServer(uvicorn.Server):
    """``uvicorn.Server`` telling systemd when it serves and when it stops."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and not self.should_exit:
            sd_notify("READY=1\nSTATUS=serving")

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        sd_notify("STOPPING=1")
        await super().shutdown(sockets=sockets)


def watchdog_task() -> Callable[[], Awaitable[None]] | None:
    """The supervised watchdog loop when systemd asked for one (``WATCHDOG_USEC``), else None."""
    interval = watchdog_interval_s()
    if interval is None:
        return None
    return lambda: watchdog_loop(interval)


__all__ = ["NotifyingServer", "watchdog_task"]
