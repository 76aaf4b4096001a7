"""The rate limiter's order of service: priorities, one probe while uncertain, 429 pauses.

Real :class:`RateLimiter` on real asyncio; its windows follow an exchange clock the test sets (a
fixed instant, so no window turns unless the test moves it).  ``track_replies`` is on, as the
transport sets it: every request counted by ``acquire`` is over when the test calls ``settle``.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from coordinator.exchange import constants as c
from coordinator.exchange.constants import (
    BOOK_TICKER,
    CANCEL_ALGO_ORDER,
    CANCEL_ORDER,
    NEW_ALGO_ORDER,
    NEW_ORDER,
    POSITION_RISK,
)
from coordinator.exchange.priority import Priority, effective, raised_to
from coordinator.exchange.rate_limit import RateLimiter

MINUTE_START_MS = 1_704_153_600_000


def _limiter(weight: int = 100, now_ms: int = MINUTE_START_MS + 10_000) -> RateLimiter:
    limiter = RateLimiter(weight, 300, 1200, exchange_ms=lambda: now_ms)
    limiter.track_replies = True
    return limiter


async def _settle_soon(limiter: RateLimiter, used: int | None = None) -> None:
    await asyncio.sleep(0.01)
    if used is not None:
        limiter.observe({c.USED_WEIGHT_HEADER: str(used)})
    limiter.settle()


def test_endpoints_carry_their_priority_and_a_block_raises_it() -> None:
    assert NEW_ALGO_ORDER.default_priority is Priority.PROTECT
    assert CANCEL_ALGO_ORDER.default_priority is Priority.PROTECT
    assert CANCEL_ORDER.default_priority is Priority.CLOSE
    assert NEW_ORDER.default_priority is Priority.ENTRY
    assert POSITION_RISK.default_priority is Priority.ACCOUNT
    assert BOOK_TICKER.default_priority is Priority.MARKET
    with raised_to(Priority.PROTECT):
        assert effective(Priority.ACCOUNT) is Priority.PROTECT
    with raised_to(Priority.ACCOUNT):
        assert effective(Priority.PROTECT) is Priority.PROTECT  # never lowered
    assert effective(Priority.MARKET) is Priority.MARKET


def test_while_uncertain_one_probe_goes_and_the_rest_wait_for_its_header() -> None:
    async def scenario() -> None:
        limiter = _limiter()
        order: list[str] = []

        async def request(name: str, priority: Priority) -> None:
            await limiter.acquire(1, priority=priority)
            order.append(name)

        await limiter.acquire(1, priority=Priority.MARKET)  # the probe: no header yet
        waiting = [asyncio.create_task(request(f"market{i}", Priority.MARKET)) for i in range(3)]
        waiting += [asyncio.create_task(request(f"stop{i}", Priority.PROTECT)) for i in range(2)]
        await asyncio.sleep(0.05)
        # Before the probe's reply only one protective request goes beside it; no market data.
        assert order == ["stop0"] and limiter.in_flight == 2
        limiter.observe({c.USED_WEIGHT_HEADER: "10"})
        limiter.settle()
        limiter.settle()
        await asyncio.sleep(0.05)
        assert order[1] == "stop1"  # then highest priority first
        assert sorted(order[2:]) == ["market0", "market1", "market2"]
        for task in waiting:
            await task

    asyncio.run(scenario())


def test_when_the_budget_is_short_the_stop_goes_before_queued_market_data() -> None:
    async def scenario() -> None:
        limiter = _limiter(weight=100)
        await limiter.acquire(1)
        await _settle_soon(limiter, used=88)  # another client: 88 of 100 used
        order: list[str] = []

        async def request(name: str, weight: int, priority: Priority) -> None:
            await limiter.acquire(weight, priority=priority)
            order.append(name)

        market = [asyncio.create_task(request(f"m{i}", 5, Priority.MARKET)) for i in range(4)]
        await asyncio.sleep(0.02)
        stop = asyncio.create_task(request("stop", 1, Priority.PROTECT))
        close = asyncio.create_task(request("close", 1, Priority.CLOSE))
        await asyncio.sleep(0.02)
        # 12 left, 2 reserved for protection, under 10%: one request in flight at a time, and
        # the stop beside it, ahead of the market data queued before it
        assert order == ["m0", "stop"]
        for _ in range(3):
            limiter.settle()
            await asyncio.sleep(0.02)
        assert order == ["m0", "stop", "close"]  # the close next, ahead of the queued market data
        # 88 + 5 + 1 + 1 = 95: another 5 would eat into the protective reserve, so m1 waits
        assert limiter.delay_for(5, priority=Priority.MARKET) > 0.0
        assert limiter.delay_for(5, priority=Priority.PROTECT) == 0.0
        for task in [*market, stop, close]:
            task.cancel()
        await asyncio.gather(*market, stop, close, return_exceptions=True)

    asyncio.run(scenario())


def test_another_clients_rate_is_projected_between_headers() -> None:
    async def scenario() -> None:
        now = [MINUTE_START_MS + 10_000]
        limiter = RateLimiter(1000, 300, 1200, exchange_ms=lambda: now[0])
        limiter.track_replies = True
        await limiter.acquire(1)
        limiter.observe({c.USED_WEIGHT_HEADER: "1"})
        limiter.settle()
        now[0] += 1_000
        await limiter.acquire(1)
        limiter.observe({c.USED_WEIGHT_HEADER: "302"})  # 300 in 1 s from someone else
        limiter.settle()
        assert limiter.foreign_per_ms == pytest.approx(0.3)
        now[0] += 1_000  # by now they have used about 300 more: 602 of 1000
        assert limiter.delay_for(370, priority=Priority.MARKET) == 0.0
        assert limiter.delay_for(390, priority=Priority.MARKET) > 0.0  # would exceed: next window

    asyncio.run(scenario())


def test_a_429_pauses_all_but_one_protective_request_and_a_second_429_stops_it() -> None:
    async def scenario() -> None:
        limiter = _limiter()
        limiter.pause(5.0)
        market = asyncio.create_task(limiter.acquire(1, priority=Priority.MARKET))
        close = asyncio.create_task(limiter.acquire(1, priority=Priority.CLOSE))
        started = time.monotonic()
        await limiter.acquire(0, priority=Priority.PROTECT)  # goes through the pause
        assert time.monotonic() - started < 0.5
        second = asyncio.create_task(limiter.acquire(1, priority=Priority.PROTECT))
        await asyncio.sleep(0.05)
        assert not second.done()  # one protective request in flight at a time
        limiter.pause(5.0)  # it got a 429 too: the second of this pause
        limiter.settle()
        await asyncio.sleep(0.05)
        assert not second.done() and not market.done() and not close.done()
        for task in (market, close, second):
            task.cancel()
        await asyncio.gather(market, close, second, return_exceptions=True)

    asyncio.run(scenario())


def test_a_418_pauses_protection_too() -> None:
    async def scenario() -> None:
        limiter = _limiter()
        limiter.pause(120.0, banned=True)
        stop = asyncio.create_task(limiter.acquire(0, priority=Priority.PROTECT))
        await asyncio.sleep(0.05)
        assert not stop.done()
        stop.cancel()
        await asyncio.gather(stop, return_exceptions=True)

    asyncio.run(scenario())
