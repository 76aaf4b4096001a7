"""Client-side rate limiting: fixed windows on the exchange's clock, corrected by reply headers.

- Binance counts REQUEST_WEIGHT per minute (per IP) and ORDERS per 10 s and per minute (per
  account) in FIXED windows aligned on its own clock: the weight and the 1-minute order count
  restart at every clock minute (``now_ms // 60000``), the 10-second count at every multiple of
  10 s (the paper exchange's ``FixedWindow`` does the same).  A token bucket does not mirror that:
  after a header says the minute is nearly spent, it keeps refilling (40/s at 2400/min), so one
  window could take ``2400 + 40 x seconds left`` and earn a 429.  So each limit here is a
  :class:`WindowCounter` (limit, window size, current window, used) seeded from exchangeInfo's
  ``rateLimits``: a request goes when its cost still fits the current window, else it waits for
  the next one.  A request takes its endpoint's weight, an order placement also one ORDERS count;
  a cost above the limit goes alone in a fresh window.
- The windows follow the EXCHANGE's clock as the transport estimates it (local time plus the
  offset synced from ``/fapi/v1/time``): :class:`~coordinator.exchange.transport.Transport` binds
  :attr:`RateLimiter.exchange_ms` to its ``now_ms``; a standalone limiter uses wall time.
- Clock skew at a boundary ``B``: our estimate ``E`` of the exchange's time ``T`` at the moment a
  request arrives there is off by ``err`` (offset error plus one-way latency); we assume
  ``|err| < BOUNDARY_MARGIN_MS``.  Our window ``k + 1`` starts at ``B + margin``, so whenever we are
  in window ``k + 1`` the exchange is too (``T > E - margin >= B``): we never start counting from
  zero while the exchange still counts the old window.  A request sent with ``E`` in
  ``[B - margin, B + margin)`` may land in either window, so it counts in both (in the current
  window and, carried over, in the next); outside that span a request is in our window for sure.
  Our count is then never below the exchange's count of our own requests.  What we cannot see
  (other clients on the IP, a restart) the first reply's header corrects.  A header is applied to
  the window current when the reply arrives; one from the previous exchange window arriving after
  our boundary (a reply slower than the margin) only over-counts: it delays, never a 429.
- Every reply's ``X-MBX-USED-WEIGHT-1M`` / ``X-MBX-ORDER-COUNT-10S`` / ``-1M`` raises a counter to
  the used value the exchange reports when it counted more than we did; the last used weight
  reported is kept in :attr:`RateLimiter.used_weight` (the ``xylen_rate_limit_weight_used`` gauge
  reads it).
- Priorities (:class:`~coordinator.exchange.priority.Priority`): waiting requests are served
  highest priority first (protective orders and their cancels, closes, entries, account reads,
  market data), in arrival order within one priority.  Only the first waiter may go; when it
  must wait for the next window, everyone behind it waits too, but a request of a higher
  priority that arrives meanwhile goes ahead of it as soon as it fits.  Requests below
  ``PROTECT`` leave :data:`PROTECT_RESERVE_FRACTION` of the limit unused, so a stop's cancel
  (weight 1) or a stop (weight 0) fits when the rest is spent.
- One request at a time while the budget is uncertain: when no reply has reported the used weight
  since our window turned (at start, after every window turn) or the budget left after the
  request is under :data:`TIGHT_FRACTION` of the limit, a request goes only when none is in
  flight (a probe), so the reply's header corrects the count before the rest are released; a
  burst never leaves on a guess.  A protective request may go beside the probe (two in flight
  at most), so a slow probe never holds a stop back.  (The transport reports replies with
  :meth:`RateLimiter.settle`; a limiter used without it, ``track_replies`` false, neither
  probes nor keeps the reserve.)
- Another client on the same IP: a header reporting more than we counted is weight someone else
  used.  Its rate (an average of ``excess / time since the previous header``) is projected
  forward: a request fits only if our count plus what the other client will have used by now
  leaves room for it.
- A 429 pauses every request but protective ones until its ``Retry-After`` (the window's end)
  and marks the current windows full.  While paused, one protective request may be in flight at
  a time, and only until a second 429 arrives in the same pause (Binance bans an IP that keeps
  sending after 429s: after two, nothing goes until the pause ends).  A 418 (a ban) pauses
  everything.  So the coordinator's own traffic never earns a 418.

There is no lock: waiters sit in a priority queue and each wakes when the state changes (a
request left, a reply arrived, a waiter gave up) or when its timed wait (a window, a pause)
ends.  A request with a send deadline (:data:`~coordinator.exchange.deadline.SEND_DEADLINE`, set
for an entry) waits neither behind other requests, nor for a window, nor for a pause past that
deadline: it raises :class:`~coordinator.exchange.deadline.DeadlineExceeded` at once.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field

from coordinator.exchange.constants import (
    ORDER_COUNT_1M_HEADER,
    ORDER_COUNT_10S_HEADER,
    USED_WEIGHT_HEADER,
)
from coordinator.exchange.deadline import SEND_DEADLINE, DeadlineExceeded, check, remaining_s
from coordinator.exchange.priority import Priority
from coordinator.exchange.schemas import RateLimit
from xylen.timeutil import wall_ms

logger = logging.getLogger(__name__)

_INTERVAL_S = {"SECOND": 1.0, "MINUTE": 60.0, "HOUR": 3600.0, "DAY": 86400.0}

MINUTE_MS = 60_000
TEN_SECONDS_MS = 10_000
# How far our estimate of the exchange's clock may be off when a request arrives there (offset
# error plus one-way latency).  Our windows start this long after the exchange's boundaries and
# requests within it of a boundary count in both windows (see the module docstring).
BOUNDARY_MARGIN_MS = 1_000
_NO_WINDOW = -(2**62)
# Below this share of the weight limit left, one request at a time (each reply corrects the count).
TIGHT_FRACTION = 0.1
# The share of the weight limit only protective requests may use.
PROTECT_RESERVE_FRACTION = 0.02
# 429s within one pause after which not even protective requests go until the pause ends.
MAX_STRIKES_PER_PAUSE = 2


def _ms_of(clock: Callable[[], float]) -> Callable[[], int]:
    """``clock`` (seconds) in whole ms."""
    return lambda: round(clock() * 1000)


class WindowCounter:
    """``used`` of ``limit`` in the current fixed window of ``size_ms`` (see the module docstring).

    Window ``k`` is ``[k * size_ms + margin_ms, (k + 1) * size_ms + margin_ms)`` on the exchange's
    clock; ``carry`` is what was taken within ``margin_ms`` before the next window's exchange
    boundary, already counted in the next window.
    """

    __slots__ = ("carry", "index", "limit", "margin_ms", "size_ms", "used")

    def __init__(self, limit: int, size_ms: int, margin_ms: int = BOUNDARY_MARGIN_MS) -> None:
        if limit <= 0 or size_ms <= 0:
            raise ValueError("limit and size_ms must be positive")
        if not 0 <= 2 * margin_ms < size_ms:
            raise ValueError("margin_ms must be at least 0 and under half the window")
        self.limit = limit
        self.size_ms = size_ms
        self.margin_ms = margin_ms
        self.index = _NO_WINDOW
        self.used = 0
        self.carry = 0

    def roll(self, now_ms: int) -> None:
        """Move to the window of ``now_ms`` (the count restarts, from the carry, in a new window).

        Never moves back: after a resync moved our clock back across a boundary, counting on in the
        later window only over-counts.
        """
        index = (now_ms - self.margin_ms) // self.size_ms
        if index > self.index:
            self.used = self.carry if index == self.index + 1 else 0
            self.carry = 0
            self.index = index

    def next_start_ms(self) -> int:
        """When our next window starts (the exchange's boundary plus the margin)."""
        return (self.index + 1) * self.size_ms + self.margin_ms

    def delay_for(self, amount: int, now_ms: int) -> float:
        """Seconds until ``amount`` fits (0.0: now).  Above the limit it needs an empty window."""
        self.roll(now_ms)
        if self.used + min(amount, self.limit) <= self.limit:
            return 0.0
        return max(self.next_start_ms() - now_ms, 1) / 1000.0

    def take(self, amount: int, now_ms: int) -> None:
        """Count ``amount``; near the boundary also in the next window."""
        self.roll(now_ms)
        self.used += amount
        if now_ms >= self.next_start_ms() - 2 * self.margin_ms:
            self.carry += amount

    def observe_used(self, used: int, now_ms: int) -> None:
        """The exchange says ``used`` is spent: never believe we used less."""
        self.roll(now_ms)
        self.used = max(self.used, used)

    def drain(self, now_ms: int) -> None:
        """Nothing left in this window (after a 429)."""
        self.roll(now_ms)
        self.used = max(self.used, self.limit)


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


@dataclass(order=True, slots=True)
class _Waiter:
    priority: int
    seq: int
    weight: int = field(compare=False)
    orders: int = field(compare=False)


class RateLimiter:
    """REQUEST_WEIGHT and ORDERS window counters, a priority queue and a pause (module docstring).

    ``clock`` (seconds, default monotonic) times the 429/418 pause and ``sleep`` waits;
    :attr:`exchange_ms` is the exchange's clock in ms the windows follow: wall time by default,
    ``clock`` in ms when a ``clock`` is injected (a test's fake clock drives both), and the
    transport rebinds it to its ``now_ms`` (and sets :attr:`track_replies`).
    """

    def __init__(
        self,
        weight_per_minute: int = 2400,
        orders_per_10s: int = 300,
        orders_per_minute: int = 1200,
        *,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        exchange_ms: Callable[[], int] | None = None,
        margin_ms: int = BOUNDARY_MARGIN_MS,
        weight_window_ms: int = MINUTE_MS,
    ) -> None:
        if exchange_ms is None:
            exchange_ms = wall_ms if clock is None else _ms_of(clock)
        self._clock = time.monotonic if clock is None else clock
        self._sleep = sleep
        self.exchange_ms = exchange_ms
        self.weight = WindowCounter(weight_per_minute, weight_window_ms, margin_ms)
        self.orders_10s = WindowCounter(orders_per_10s, TEN_SECONDS_MS, margin_ms)
        self.orders_1m = WindowCounter(orders_per_minute, MINUTE_MS, margin_ms)
        self.pause_until = 0.0
        self.pauses = 0
        self.banned = False
        self.used_weight: int | None = None  # the last X-MBX-USED-WEIGHT-1M the server reported
        self.track_replies = False  # set by a transport that calls settle() after every request
        self.in_flight = 0
        self.foreign_per_ms = 0.0  # another client's weight per ms on our IP, as the headers show
        self._confirmed_index = _NO_WINDOW  # the weight window a header last reported on
        self._header_ms = 0
        self._strikes = 0
        self._waiters: list[_Waiter] = []
        self._seq = itertools.count()
        self._changed = asyncio.Event()

    @classmethod
    def from_rate_limits(
        cls,
        limits: Iterable[RateLimit],
        *,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        exchange_ms: Callable[[], int] | None = None,
    ) -> RateLimiter:
        """A limiter seeded from exchangeInfo's ``rateLimits`` (Binance's defaults for missing ones)."""
        weight, orders_10s, orders_1m = limits_of(limits)
        return cls(weight, orders_10s, orders_1m, clock=clock, sleep=sleep, exchange_ms=exchange_ms)

    def reseed(self, limits: Iterable[RateLimit]) -> None:
        """Replace the limits with exchangeInfo's (keeps the pause and what the windows counted)."""
        self.weight.limit, self.orders_10s.limit, self.orders_1m.limit = limits_of(limits)

    @property
    def weight_limit(self) -> int:
        """The REQUEST_WEIGHT allowed per minute (exchangeInfo's, or Binance's default)."""
        return self.weight.limit

    def paused_for(self) -> float:
        """Seconds left of the current 429/418 pause (0.0: not paused)."""
        return max(0.0, self.pause_until - self._clock())

    def foreign_since_header(self, now_ms: int) -> int:
        """The weight another client is expected to have used since the last header."""
        if self.foreign_per_ms <= 0.0 or self._confirmed_index != self.weight.index:
            return 0
        return int(self.foreign_per_ms * max(0, now_ms - self._header_ms))

    def delay_for(
        self, weight: int, orders: int = 0, now_ms: int | None = None, priority: Priority = Priority.ACCOUNT
    ) -> float:
        """Seconds before a request of this cost may go (0.0: now); ``now_ms`` on the exchange's clock."""
        if now_ms is None:
            now_ms = self.exchange_ms()
        counter = self.weight
        counter.roll(now_ms)
        extra = self.foreign_since_header(now_ms)
        if self.track_replies and priority is not Priority.PROTECT:
            extra += int(counter.limit * PROTECT_RESERVE_FRACTION)
        if weight + extra > counter.limit:  # never fits next to the extras: alone in a fresh window
            extra = 0
        delay = max(self.paused_for(), counter.delay_for(weight + extra, now_ms))
        if orders:
            delay = max(
                delay, self.orders_10s.delay_for(orders, now_ms), self.orders_1m.delay_for(orders, now_ms)
            )
        return delay

    def _uncertain(self, weight: int, now_ms: int) -> bool:
        """Whether only one request may be in flight (module docstring)."""
        counter = self.weight
        if self._confirmed_index != counter.index:
            return True
        left = counter.limit - counter.used - self.foreign_since_header(now_ms) - weight
        return left < counter.limit * TIGHT_FRACTION

    def _wait_s(self, waiter: _Waiter) -> float | None:
        """0.0: the first waiter goes now; seconds: it waits that long; None: until a change."""
        priority = Priority(waiter.priority)
        pause = self.paused_for()
        if pause > 0.0:
            if priority is Priority.PROTECT and not self.banned and self._strikes < MAX_STRIKES_PER_PAUSE:
                return None if self.in_flight else 0.0
            return pause
        now_ms = self.exchange_ms()
        delay = self.delay_for(waiter.weight, waiter.orders, now_ms, priority)
        if delay > 0.0:
            return delay
        # One probe at a time while uncertain; a protective request may go beside it (a hung
        # probe must not hold a stop back), but not beside another one.
        beside = priority is Priority.PROTECT and self.in_flight < 2
        if self.track_replies and self.in_flight and not beside and self._uncertain(waiter.weight, now_ms):
            return None
        return 0.0

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _take(self, waiter: _Waiter) -> None:
        now_ms = self.exchange_ms()
        self.weight.take(waiter.weight, now_ms)
        if waiter.orders:
            self.orders_10s.take(waiter.orders, now_ms)
            self.orders_1m.take(waiter.orders, now_ms)
        if self.track_replies:
            self.in_flight += 1

    async def acquire(self, weight: int, orders: int = 0, priority: Priority = Priority.ACCOUNT) -> None:
        """Wait for this request's turn (priority order), the windows and any pause; then count it.

        With a send deadline nothing waits past it.  A transport with :attr:`track_replies` calls
        :meth:`settle` once the request is over, whatever its outcome.
        """
        deadline = SEND_DEADLINE.get()
        waiter = _Waiter(int(priority), next(self._seq), weight, orders)
        heapq.heappush(self._waiters, waiter)
        try:
            while True:
                changed = self._changed
                wait = self._wait_s(waiter)
                if self._waiters[0] is not waiter:  # behind others: at least as long as its own wait
                    if wait:
                        check(deadline, wait, "a request waiting for the rate limit")
                    wait = None
                if wait == 0.0:
                    heapq.heappop(self._waiters)
                    self._take(waiter)
                    self._notify()
                    return
                if wait is None:
                    await self._until_changed(changed, deadline)
                else:
                    check(deadline, wait, "a request waiting for the rate limit")
                    await self._sleep(wait)
        finally:
            if waiter in self._waiters:  # cancelled or past its deadline: let the next one try
                self._waiters.remove(waiter)
                heapq.heapify(self._waiters)
                self._notify()

    async def _until_changed(self, changed: asyncio.Event, deadline: float | None) -> None:
        left = remaining_s(deadline)
        if left is None:
            await changed.wait()
            return
        try:
            await asyncio.wait_for(changed.wait(), left)
        except asyncio.TimeoutError:
            raise DeadlineExceeded(
                "queued behind other requests past the decision's deadline: not sent"
            ) from None

    def settle(self) -> None:
        """A request counted by :meth:`acquire` is over (answered or failed): the next may go."""
        if self.in_flight > 0:
            self.in_flight -= 1
        self._notify()

    def observe(self, headers: Mapping[str, str]) -> None:
        """Correct the windows from a reply's ``X-MBX-USED-WEIGHT-1M`` / ``X-MBX-ORDER-COUNT-*``."""
        now_ms = self.exchange_ms()
        for name, counter in (
            (USED_WEIGHT_HEADER, self.weight),
            (ORDER_COUNT_10S_HEADER, self.orders_10s),
            (ORDER_COUNT_1M_HEADER, self.orders_1m),
        ):
            raw = headers.get(name)
            if raw is None or not raw.isdigit():
                continue
            used = int(raw)
            if counter is self.weight:
                self._observe_weight(used, now_ms)
            else:
                counter.observe_used(used, now_ms)
        self._notify()

    def _observe_weight(self, used: int, now_ms: int) -> None:
        counter = self.weight
        counter.roll(now_ms)
        if self._confirmed_index == counter.index:
            since = self._header_ms
        else:  # the first report in this window: the other client started from zero at its start
            since = counter.index * counter.size_ms + counter.margin_ms
        sample = max(0, used - counter.used) / max(now_ms - since, 1)
        self.foreign_per_ms = sample if sample > self.foreign_per_ms else (self.foreign_per_ms + sample) / 2
        counter.observe_used(used, now_ms)
        self.used_weight = used
        self._confirmed_index = counter.index
        self._header_ms = now_ms

    def pause(self, seconds: float, *, banned: bool = False) -> None:
        """A 429 (or a 418 ban): hold requests for ``seconds`` and mark the windows full.

        Protective requests may still go one at a time during a 429's pause, until a second 429.
        """
        if self.paused_for() <= 0.0:
            self._strikes = 0
            self.banned = False
        self._strikes += 1
        self.banned = self.banned or banned
        self.pause_until = max(self.pause_until, self._clock() + max(seconds, 0.0))
        self.pauses += 1
        now_ms = self.exchange_ms()
        for counter in (self.weight, self.orders_10s, self.orders_1m):
            counter.drain(now_ms)
        self._confirmed_index = _NO_WINDOW  # the next window's budget is uncertain: probe it
        self._notify()
        log = logger.error if banned else logger.warning
        what = "418 ban: pausing all requests" if banned else "429: pausing all but protective requests"
        log("rate limited (%s) for %.1f s", what, seconds)
