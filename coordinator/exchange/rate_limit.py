"""Client-side rate limiting: token buckets seeded from exchangeInfo, corrected by reply headers.

- REQUEST_WEIGHT per minute (per IP) and ORDERS per 10 s and per minute (per account) are token
  buckets (capacity = the limit, refilled evenly over the interval), seeded from exchangeInfo's
  ``rateLimits``.  A request takes its endpoint's weight, an order placement also one ORDERS token.
- Every reply's ``X-MBX-USED-WEIGHT-1M`` / ``X-MBX-ORDER-COUNT-10S`` / ``-1M`` lowers a bucket to
  ``limit - used`` when the server has counted more than we did (other clients on the IP, a restart);
  the last used weight reported is kept in :attr:`RateLimiter.used_weight` (the
  ``xylen_rate_limit_weight_used`` gauge reads it).
- A 429 or 418 pauses ALL requests until its ``Retry-After`` (or the ban) ends and empties the
  buckets; a request waiting in :meth:`RateLimiter.acquire` leaves only after the pause.

Waiters queue in FIFO order behind one lock, so a paused limiter holds everyone back at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping

from coordinator.exchange.constants import (
    ORDER_COUNT_1M_HEADER,
    ORDER_COUNT_10S_HEADER,
    USED_WEIGHT_HEADER,
)
from coordinator.exchange.schemas import RateLimit

logger = logging.getLogger(__name__)

_INTERVAL_S = {"SECOND": 1.0, "MINUTE": 60.0, "HOUR": 3600.0, "DAY": 86400.0}


class TokenBucket:
    """``capacity`` tokens refilled at ``capacity / interval_s`` per second; never above capacity."""

    __slots__ = ("capacity", "rate", "stamp", "tokens")

    def __init__(self, capacity: float, interval_s: float, now: float) -> None:
        if capacity <= 0 or interval_s <= 0:
            raise ValueError("capacity and interval_s must be positive")
        self.capacity = float(capacity)
        self.rate = self.capacity / interval_s
        self.tokens = self.capacity
        self.stamp = now

    def refill(self, now: float) -> None:
        """Add the tokens earned since the last call."""
        if now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def delay_for(self, amount: float, now: float) -> float:
        """Seconds until ``amount`` tokens (at most ``capacity``) are available; 0.0 if they are now."""
        self.refill(now)
        missing = min(amount, self.capacity) - self.tokens
        return 0.0 if missing <= 0 else missing / self.rate

    def take(self, amount: float, now: float) -> None:
        """Spend ``amount`` tokens (the balance may go negative: it then has to refill first)."""
        self.refill(now)
        self.tokens -= amount

    def observe_used(self, used: float, now: float) -> None:
        """The server says ``used`` of the limit is spent: never believe we have more than the rest."""
        self.refill(now)
        self.tokens = min(self.tokens, self.capacity - used)

    def drain(self, now: float) -> None:
        """Nothing left (after a 429)."""
        self.refill(now)
        self.tokens = min(self.tokens, 0.0)


def limits_of(limits: Iterable[RateLimit]) -> tuple[int, int, int]:
    """``(weight per minute, orders per 10 s, orders per minute)`` from exchangeInfo's ``rateLimits``."""
    weight, orders_10s, orders_1m = 2400, 300, 1200
    for item in limits:
        seconds = _INTERVAL_S.get(item.interval, 0.0) * item.intervalNum
        if item.rateLimitType == "REQUEST_WEIGHT" and seconds == 60.0:
            weight = item.limit
        elif item.rateLimitType == "ORDERS" and seconds == 10.0:
            orders_10s = item.limit
        elif item.rateLimitType == "ORDERS" and seconds == 60.0:
            orders_1m = item.limit
    return weight, orders_10s, orders_1m


class RateLimiter:
    """REQUEST_WEIGHT and ORDERS buckets plus a global pause (see the module docstring)."""

    def __init__(
        self,
        weight_per_minute: int = 2400,
        orders_per_10s: int = 300,
        orders_per_minute: int = 1200,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        now = clock()
        self.weight = TokenBucket(weight_per_minute, 60.0, now)
        self.orders_10s = TokenBucket(orders_per_10s, 10.0, now)
        self.orders_1m = TokenBucket(orders_per_minute, 60.0, now)
        self.pause_until = 0.0
        self.pauses = 0
        self.used_weight: int | None = None  # the last X-MBX-USED-WEIGHT-1M the server reported
        self._lock = asyncio.Lock()

    @classmethod
    def from_rate_limits(
        cls,
        limits: Iterable[RateLimit],
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> RateLimiter:
        """A limiter seeded from exchangeInfo's ``rateLimits`` (Binance's defaults for missing ones)."""
        weight, orders_10s, orders_1m = limits_of(limits)
        return cls(weight, orders_10s, orders_1m, clock=clock, sleep=sleep)

    def reseed(self, limits: Iterable[RateLimit]) -> None:
        """Replace the capacities with exchangeInfo's (keeps the pause; buckets start full)."""
        weight, orders_10s, orders_1m = limits_of(limits)
        now = self._clock()
        self.weight = TokenBucket(weight, 60.0, now)
        self.orders_10s = TokenBucket(orders_10s, 10.0, now)
        self.orders_1m = TokenBucket(orders_1m, 60.0, now)

    def paused_for(self) -> float:
        """Seconds left of the current 429/418 pause (0.0: not paused)."""
        return max(0.0, self.pause_until - self._clock())

    def delay_for(self, weight: int, orders: int, now: float) -> float:
        """Seconds before a request of this cost may go (0.0: now)."""
        delay = max(0.0, self.pause_until - now, self.weight.delay_for(weight, now))
        if orders:
            delay = max(delay, self.orders_10s.delay_for(orders, now), self.orders_1m.delay_for(orders, now))
        return delay

    async def acquire(self, weight: int, orders: int = 0) -> None:
        """Wait (FIFO) until the pause is over and the buckets hold the cost, then spend it."""
        async with self._lock:
            while True:
                now = self._clock()
                delay = self.delay_for(weight, orders, now)
                if delay <= 0.0:
                    self.weight.take(weight, now)
                    if orders:
                        self.orders_10s.take(orders, now)
                        self.orders_1m.take(orders, now)
                    return
                await self._sleep(delay)

    def observe(self, headers: Mapping[str, str]) -> None:
        """Correct the buckets from a reply's ``X-MBX-USED-WEIGHT-1M`` / ``X-MBX-ORDER-COUNT-*``."""
        now = self._clock()
        for name, bucket in (
            (USED_WEIGHT_HEADER, self.weight),
            (ORDER_COUNT_10S_HEADER, self.orders_10s),
            (ORDER_COUNT_1M_HEADER, self.orders_1m),
        ):
            raw = headers.get(name)
            if raw is not None and raw.isdigit():
                bucket.observe_used(int(raw), now)
                if bucket is self.weight:
                    self.used_weight = int(raw)

    def pause(self, seconds: float, *, banned: bool = False) -> None:
        """A 429 (or a 418 ban): hold every request for ``seconds`` and empty the buckets."""
        now = self._clock()
        self.pause_until = max(self.pause_until, now + max(seconds, 0.0))
        self.pauses += 1
        for bucket in (self.weight, self.orders_10s, self.orders_1m):
            bucket.drain(now)
        log = logger.error if banned else logger.warning
        log("rate limited (%s): pausing all requests for %.1f s", "418 ban" if banned else "429", seconds)
