"""Binance rate limits: REQUEST_WEIGHT per IP, ORDERS per account, 429 then a growing 418 ban.

Windows are fixed and aligned like Binance's: the weight and the 1-minute order count restart at
every wall-clock minute (``now_ms // 60000``), the 10-second order count at every multiple of 10 s.
Each counter is an ``(window start, count)`` pair, so every check is O(1).

Choices Binance's documentation leaves open:

- Every request is charged its weight before anything else, errors included (a 401 or a 404
  costs its weight too; an unmatched path costs 1).  The used weight can exceed the limit.
- Over the weight limit -> 429 ``-1003 "Too many requests; current limit is 2400 requests per
  minute. Please use the websocket for live updates to avoid polling the API."`` with
  ``Retry-After`` = seconds to the next window.
- An IP that has received ``ban_after_429s`` 429 replies in a window and sends another request
  over the limit in that window is banned: 418 ``-1003 "Way too many requests; IP banned until
  <ms>. Please use the websocket for live updates to avoid bans."`` with ``Retry-After``.  The first
  ban lasts ``ban_initial_s`` (2 min), each further ban doubles it up to ``ban_max_s`` (3 days);
  the doubling resets after 24 h without a ban.  Requests during a ban are not charged.
- Another client on the same IP (the ``foreign_weight_per_s`` fault): the IP is charged that much
  weight per second, continuously, from the first time it is seen: in each window the used weight
  is what its requests cost plus ``rate x the time elapsed in the window`` (whole units, rounded
  down).  It shows in ``X-MBX-USED-WEIGHT-1M`` and counts toward 429s and bans like any request.
- ``weight_window_ms`` (default one minute) shrinks the weight window for tests, so that minutes
  of pressure take seconds; Binance's window is the minute.
- Orders are counted per account on every authenticated order request (accepted or refused by
  the engine).  Over a limit -> 429 ``-1015 "Too many new orders; current limit is 300 orders per
  10 SECOND."`` (or ``1200 orders per 1 MINUTE.``) with ``Retry-After``; order limits never ban.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

from paper_exchange.protocol import BinanceError

logger = logging.getLogger(__name__)

MINUTE_MS = 60_000
TEN_SECONDS_MS = 10_000
BAN_ESCALATION_RESET_MS = 24 * 3600 * 1000

MSG_TOO_MANY = (
    "Too many requests; current limit is {limit} requests per minute. "
    "Please use the websocket for live updates to avoid polling the API."
)
MSG_BANNED = (
    "Way too many requests; IP banned until {until}. Please use the websocket for live updates to avoid bans."
)
MSG_TOO_MANY_ORDERS = "Too many new orders; current limit is {limit} orders per {span}."


class RateLimited(BinanceError):
    """A 429 or 418 reply; ``retry_after_s`` goes into the ``Retry-After`` header."""

    def __init__(self, code: int, msg: str, http_status: int, retry_after_s: int) -> None:
        super().__init__(code, msg, http_status)
        self.retry_after_s = retry_after_s


class FixedWindow:
    """A counter that restarts at every multiple of ``size_ms``."""

    __slots__ = ("count", "size_ms", "start_ms")

    def __init__(self, size_ms: int) -> None:
        self.size_ms = size_ms
        self.start_ms = -1
        self.count = 0

    def add(self, now_ms: int, amount: int) -> int:
        start = now_ms - now_ms % self.size_ms
        if start != self.start_ms:
            self.start_ms = start
            self.count = 0
        self.count += amount
        return self.count

    def current(self, now_ms: int) -> int:
        return self.count if now_ms - now_ms % self.size_ms == self.start_ms else 0

    def retry_after_s(self, now_ms: int) -> int:
        """Whole seconds (at least 1) until this window ends."""
        end = now_ms - now_ms % self.size_ms + self.size_ms
        return max(1, math.ceil((end - now_ms) / 1000))


@dataclass(slots=True)
class _IpState:
    weight: FixedWindow
    first_seen_ms: int
    strikes_window_ms: int = -1
    strikes: int = 0
    ban_until_ms: int = 0
    bans: int = 0
    last_ban_ms: int = 0


@dataclass(slots=True)
class _AccountState:
    orders_10s: FixedWindow = field(default_factory=lambda: FixedWindow(TEN_SECONDS_MS))
    orders_1m: FixedWindow = field(default_factory=lambda: FixedWindow(MINUTE_MS))


class RateLimiter:
    """REQUEST_WEIGHT per IP and ORDERS per account, with Binance's replies when exceeded."""

    def __init__(
        self,
        weight_limit_1m: int = 2400,
        orders_limit_10s: int = 300,
        orders_limit_1m: int = 1200,
        ban_after_429s: int = 2,
        ban_initial_s: int = 120,
        ban_max_s: int = 3 * 24 * 3600,
        *,
        weight_window_ms: int = MINUTE_MS,
        foreign_weight_per_s: float = 0.0,
    ) -> None:
        if weight_window_ms < 1000 or not 0.0 <= foreign_weight_per_s < math.inf:
            raise ValueError("weight_window_ms >= 1000 and a finite foreign_weight_per_s >= 0")
        self.weight_limit_1m = weight_limit_1m
        self.weight_window_ms = weight_window_ms
        self.foreign_weight_per_s = foreign_weight_per_s
        self.orders_limit_10s = orders_limit_10s
        self.orders_limit_1m = orders_limit_1m
        self.ban_after_429s = ban_after_429s
        self.ban_initial_s = ban_initial_s
        self.ban_max_s = ban_max_s
        self._ips: dict[str, _IpState] = {}
        self._accounts: dict[str, _AccountState] = {}

    def _ip(self, ip: str, now_ms: int) -> _IpState:
        state = self._ips.get(ip)
        if state is None:
            state = self._ips[ip] = _IpState(FixedWindow(self.weight_window_ms), now_ms)
        return state

    def foreign_weight(self, state: _IpState, now_ms: int) -> int:
        """What the other client on this IP has used in the current window (module docstring)."""
        rate = self.foreign_weight_per_s
        if rate <= 0.0:
            return 0
        since = max(now_ms - now_ms % self.weight_window_ms, state.first_seen_ms)
        return int(rate * max(0, now_ms - since) / 1000.0)

    def used_weight(self, ip: str, now_ms: int) -> int:
        """The weight ``ip`` used in the current window (the ``X-MBX-USED-WEIGHT-1M`` value)."""
        state = self._ips.get(ip)
        return 0 if state is None else state.weight.current(now_ms) + self.foreign_weight(state, now_ms)

    def charge_weight(self, ip: str, weight: int, now_ms: int) -> int:
        """Add ``weight`` for ``ip``; return the used weight, or raise :class:`RateLimited`."""
        state = self._ip(ip, now_ms)
        if state.ban_until_ms > now_ms:
            raise self._banned(state, now_ms)
        used = state.weight.add(now_ms, weight) + self.foreign_weight(state, now_ms)
        if used <= self.weight_limit_1m:
            return used
        if state.strikes_window_ms != state.weight.start_ms:
            state.strikes_window_ms = state.weight.start_ms
            state.strikes = 0
        if state.strikes >= self.ban_after_429s:
            if now_ms - state.last_ban_ms > BAN_ESCALATION_RESET_MS:
                state.bans = 0
            duration_s = min(self.ban_initial_s * (2**state.bans), self.ban_max_s)
            state.bans += 1
            state.last_ban_ms = now_ms
            state.ban_until_ms = now_ms + duration_s * 1000
            state.strikes = 0
            logger.warning("rate limit: IP %s banned for %d s", ip, duration_s)
            raise self._banned(state, now_ms)
        state.strikes += 1
        raise RateLimited(
            -1003, MSG_TOO_MANY.format(limit=self.weight_limit_1m), 429, state.weight.retry_after_s(now_ms)
        )

    @staticmethod
    def _banned(state: _IpState, now_ms: int) -> RateLimited:
        retry = max(1, math.ceil((state.ban_until_ms - now_ms) / 1000))
        return RateLimited(-1003, MSG_BANNED.format(until=state.ban_until_ms), 418, retry)

    def order_counts(self, account: str, now_ms: int) -> tuple[int, int]:
        """``(orders in this 10 s window, orders in this minute)`` for ``account``."""
        state = self._accounts.get(account)
        if state is None:
            return 0, 0
        return state.orders_10s.current(now_ms), state.orders_1m.current(now_ms)

    def charge_order(self, account: str, now_ms: int) -> tuple[int, int]:
        """Count one new order; return the counts, or raise :class:`RateLimited` (-1015, 429)."""
        state = self._accounts.get(account)
        if state is None:
            state = self._accounts[account] = _AccountState()
        count_10s = state.orders_10s.add(now_ms, 1)
        count_1m = state.orders_1m.add(now_ms, 1)
        if count_10s > self.orders_limit_10s:
            msg = MSG_TOO_MANY_ORDERS.format(limit=self.orders_limit_10s, span="10 SECOND")
            raise RateLimited(-1015, msg, 429, state.orders_10s.retry_after_s(now_ms))
        if count_1m > self.orders_limit_1m:
            msg = MSG_TOO_MANY_ORDERS.format(limit=self.orders_limit_1m, span="1 MINUTE")
            raise RateLimited(-1015, msg, 429, state.orders_1m.retry_after_s(now_ms))
        return count_10s, count_1m
