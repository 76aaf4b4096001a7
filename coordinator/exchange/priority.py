"""Request priorities: which request the rate limiter lets go first when the budget is short.

Lower values go first: protective orders (stop and take-profit legs) and their cancels, then
reduce-only closes (and the cancels of ordinary orders, which only ever remove exposure), then
entries, account reads, and market data last.  The client gives each call its priority (an
endpoint's own, raised for a reduce-only order); code that needs a read to go with protection
wraps it in :func:`raised_to`.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Iterator
from contextvars import ContextVar


class Priority(enum.IntEnum):
    """The order in which waiting requests are served (lowest value first)."""

    PROTECT = 0
    CLOSE = 1
    ENTRY = 2
    ACCOUNT = 3
    MARKET = 4


REQUEST_PRIORITY: ContextVar[Priority | None] = ContextVar("request_priority", default=None)


@contextlib.contextmanager
def raised_to(priority: Priority) -> Iterator[None]:
    """Requests sent inside the block go at ``priority`` at least (never lower than their own)."""
    token = REQUEST_PRIORITY.set(priority)
    try:
        yield
    finally:
        REQUEST_PRIORITY.reset(token)


def effective(own: Priority) -> Priority:
    """``own``, raised by an enclosing :func:`raised_to`."""
    outer = REQUEST_PRIORITY.get()
    return own if outer is None else min(own, outer)
