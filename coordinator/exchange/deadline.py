"""Send deadlines: an entry whose decision has aged past its limit is never sent.

:func:`entry_deadline` sets, for the code it wraps, the monotonic time by which an opening order
must have left.  :meth:`~coordinator.exchange.client.BinanceFuturesClient.new_order` applies it to
opening orders only (not reduce-only closes; conditional stop and take-profit legs go through
``new_algo_order`` and never carry it): it refuses to send once the deadline has passed, and while
the request is on its way it exposes the deadline in :data:`SEND_DEADLINE`, which the rate limiter
(no waiting past it, not even for its lock) and the retry helper (no retry past it, after a
429/418 neither) read.  Waiting past the deadline raises :class:`DeadlineExceeded`: nothing was
sent, so the order is refused, never in doubt.

Context variables follow the task: a task created inside the block inherits the deadline, so the
block should wrap the placement only.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar

from coordinator.exchange.errors import RetryableError

ENTRY_DEADLINE: ContextVar[float | None] = ContextVar("entry_deadline", default=None)
SEND_DEADLINE: ContextVar[float | None] = ContextVar("send_deadline", default=None)


class DeadlineExceeded(RetryableError):
    """The order would leave after its deadline: not sent (``sent=False``), not to be retried."""

    def __init__(self, msg: str, *, endpoint: str = "") -> None:
        super().__init__(msg, sent=False, endpoint=endpoint)


@contextlib.contextmanager
def entry_deadline(deadline: float | None) -> Iterator[None]:
    """Opening orders sent inside the block must leave before ``deadline`` (``time.monotonic()``
    seconds; ``None``: no limit)."""
    token = ENTRY_DEADLINE.set(deadline)
    try:
        yield
    finally:
        ENTRY_DEADLINE.reset(token)


def remaining_s(deadline: float | None) -> float | None:
    """Seconds left before ``deadline`` (``None``: no deadline), never below 0."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def check(deadline: float | None, wait_s: float = 0.0, what: str = "the order") -> None:
    """Raise :class:`DeadlineExceeded` when waiting ``wait_s`` more would pass ``deadline``."""
    left = remaining_s(deadline)
    if left is not None and wait_s >= left:
        raise DeadlineExceeded(
            f"{what} would wait {wait_s:.3f} s but its decision expires in {left:.3f} s: not sent"
        )
