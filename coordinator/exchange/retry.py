"""The one retry helper: jittered exponential backoff (tenacity), only where repeating is safe.

Policy:

- idempotent requests (GETs, cancels keyed by id, settings, listen keys) are retried on any
  :class:`RetryableError` (network failures, timeouts, 5xx, 429/418 after the pause);
- order placements (not idempotent) are retried ONLY when the outcome is known not to have
  executed: a 429/418 (refused before execution) or a request that was never sent (no
  connection).  A 5xx or a timeout on a placement is raised to the caller (an
  :class:`UnknownOutcomeError` when it may have executed), never blindly repeated;
- a request with a send deadline (an entry, :mod:`coordinator.exchange.deadline`) is not retried
  once the deadline has passed: a 429/418 retry waits in the limiter, which refuses to wait past
  it (:class:`~coordinator.exchange.deadline.DeadlineExceeded`, never retried);
- -1021 (:class:`ClockSkewError`) resyncs the clock offset from ``/fapi/v1/time`` and repeats the
  request once, for every endpoint (it was refused at the door).

Waits are "full jitter": uniform in ``[0, min(max_delay, base * 2**n)]``; a rate-limit pause is
enforced by the limiter itself, so the backoff here stays short.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from coordinator.exchange.constants import Endpoint
from coordinator.exchange.deadline import SEND_DEADLINE, DeadlineExceeded, remaining_s
from coordinator.exchange.errors import ClockSkewError, RateLimitError, RetryableError

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many attempts (the first included) and the backoff bounds, in seconds."""

    attempts: int = 4
    base_delay_s: float = 0.1
    max_delay_s: float = 3.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.base_delay_s < 0 or self.max_delay_s < self.base_delay_s:
            raise ValueError("attempts >= 1 and 0 <= base_delay_s <= max_delay_s")


def is_retryable(exc: BaseException, endpoint: Endpoint) -> bool:
    """Whether ``exc`` from ``endpoint`` may be repeated automatically (see the module docstring)."""
    if isinstance(exc, ClockSkewError | DeadlineExceeded) or not isinstance(exc, RetryableError):
        return False
    if remaining_s(SEND_DEADLINE.get()) == 0.0:
        return False  # past the send deadline: the decision is too old to be repeated
    if endpoint.idempotent:
        return True
    return isinstance(exc, RateLimitError) or not exc.sent


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome is not None else None
    wait = state.next_action.sleep if state.next_action is not None else 0.0
    logger.warning("attempt %d failed (%s); retrying in %.2f s", state.attempt_number, exc, wait)


async def with_retries(
    call: Callable[[], Awaitable[T]],
    endpoint: Endpoint,
    policy: RetryPolicy,
    resync_clock: Callable[[], Awaitable[object]],
) -> T:
    """``await call()`` under the policy; -1021 resyncs with ``resync_clock()`` and repeats once."""
    resynced = False

    async def attempt_once() -> T:
        nonlocal resynced
        try:
            return await call()
        except ClockSkewError:
            if resynced:
                raise
            resynced = True
            logger.warning("%s: -1021 timestamp outside recvWindow; resyncing the clock", endpoint.path)
            await resync_clock()
            return await call()

    try:  # fast path: no retry machinery unless the first attempt fails
        return await attempt_once()
    except Exception as exc:
        if policy.attempts <= 1 or not is_retryable(exc, endpoint):
            raise
        delay = random.uniform(0.0, policy.base_delay_s)  # nosec B311 # retry jitter, not a secret
        logger.warning("%s %s failed (%s); retrying in %.2f s", endpoint.method, endpoint.path, exc, delay)
    await asyncio.sleep(delay)
    retrying = AsyncRetrying(
        stop=stop_after_attempt(policy.attempts - 1),
        wait=wait_random_exponential(multiplier=policy.base_delay_s, max=policy.max_delay_s),
        retry=retry_if_exception(lambda e: is_retryable(e, endpoint)),
        before_sleep=_log_retry,
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return await attempt_once()
    raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover
