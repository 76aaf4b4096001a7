"""Send deadlines in the rate limiter and the retry helper (real limiter, real asyncio).

The limiter's pause and windows are driven by its injected clock; the deadline is on
``time.monotonic()``, as :mod:`coordinator.exchange.deadline` sets it.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from coordinator.exchange.constants import NEW_ORDER
from coordinator.exchange.deadline import SEND_DEADLINE, DeadlineExceeded
from coordinator.exchange.errors import RateLimitError
from coordinator.exchange.rate_limit import RateLimiter
from coordinator.exchange.retry import RetryPolicy, with_retries


def test_an_entry_behind_a_rate_limit_pause_fails_at_once_instead_of_sleeping() -> None:
    async def scenario() -> None:
        limiter = RateLimiter()
        limiter.pause(120.0, banned=True)  # a 418: two minutes
        token = SEND_DEADLINE.set(time.monotonic() + 5.0)
        started = time.monotonic()
        try:
            with pytest.raises(DeadlineExceeded):
                await limiter.acquire(1, 1)
        finally:
            SEND_DEADLINE.reset(token)
        assert time.monotonic() - started < 1.0

    asyncio.run(scenario())


def test_a_paused_request_does_not_hold_the_lock_an_entry_waits_for() -> None:
    async def scenario() -> None:
        limiter = RateLimiter()
        limiter.pause(0.5)
        # a request without a deadline waits out the pause; an entry queued after it with a
        # deadline shorter than the pause must fail at once rather than wait for that request
        sleeper = asyncio.create_task(limiter.acquire(1))
        await asyncio.sleep(0.05)
        token = SEND_DEADLINE.set(time.monotonic() + 0.2)
        try:
            with pytest.raises(DeadlineExceeded):
                await limiter.acquire(1, 1)
        finally:
            SEND_DEADLINE.reset(token)
        sleeper.cancel()  # after the pause it waits for the drained window: not this test's subject
        await asyncio.gather(sleeper, return_exceptions=True)

    asyncio.run(scenario())


def test_new_order_retries_after_429_stop_at_the_deadline() -> None:
    async def scenario() -> None:
        calls = 0

        async def refused() -> object:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.05)
            raise RateLimitError("Too many requests", retry_after_s=0.0, status=429)

        async def resync() -> None:
            return None

        token = SEND_DEADLINE.set(time.monotonic() + 0.08)
        try:
            with pytest.raises(RateLimitError):
                await with_retries(refused, NEW_ORDER, RetryPolicy(attempts=10, base_delay_s=0.01), resync)
        finally:
            SEND_DEADLINE.reset(token)
        assert calls <= 3  # without the deadline: all ten attempts

    asyncio.run(scenario())
