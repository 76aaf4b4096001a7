"""Rate limits: weights and headers as Binance counts them, 429 then 418 with Retry-After.

Unit tests of :class:`RateLimiter` on a controlled clock, and real HTTP on 127.0.0.1 against
``FakeService``, a fake at the seam (``test_transport_support``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from paper_exchange.rate_limit import FixedWindow, RateLimited, RateLimiter
from paper_exchange.routes import klines_weight
from paper_exchange.tests.test_transport_support import KEY, FakeService, running_app, settings, signed

T0 = 1_700_000_040.0  # a wall-clock second aligned to the minute (1700000040 % 60 == 0)


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self, now: float = T0 + 1) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    @property
    def ms(self) -> int:
        return int(self.now * 1000)


def test_fixed_windows_are_aligned() -> None:
    window = FixedWindow(60_000)
    start = int(T0 * 1000)
    assert window.add(start + 59_999, 3) == 3
    assert window.retry_after_s(start + 59_999) == 1
    assert window.add(start + 60_000, 1) == 1  # a new minute starts at :00, not 60 s after the first hit
    assert window.current(start + 120_000) == 0
    assert window.retry_after_s(start + 60_500) == 60


def test_429_then_418_with_growing_bans() -> None:
    limiter = RateLimiter(weight_limit_1m=10, ban_after_429s=2, ban_initial_s=120, ban_max_s=300)
    now = int(T0 * 1000) + 1000
    assert limiter.charge_weight("ip", 10, now) == 10
    for _ in range(2):
        with pytest.raises(RateLimited) as err:
            limiter.charge_weight("ip", 1, now)
        assert (err.value.http_status, err.value.code, err.value.retry_after_s) == (429, -1003, 59)
        assert err.value.msg == (
            "Too many requests; current limit is 10 requests per minute. "
            "Please use the websocket for live updates to avoid polling the API."
        )
    with pytest.raises(RateLimited) as err:
        limiter.charge_weight("ip", 1, now)
    assert (err.value.http_status, err.value.code, err.value.retry_after_s) == (418, -1003, 120)
    assert err.value.msg == (
        f"Way too many requests; IP banned until {now + 120_000}. "
        "Please use the websocket for live updates to avoid bans."
    )
    with pytest.raises(RateLimited) as err:  # still banned in a fresh minute, not charged
        limiter.charge_weight("ip", 1, now + 61_000)
    assert (err.value.http_status, err.value.retry_after_s) == (418, 59)
    assert limiter.used_weight("other-ip", now) == 0  # per IP
    # After the ban: a second offence doubles (capped at ban_max_s), a third hits the cap.
    later = now + 180_000
    limiter.charge_weight("ip", 10, later)
    for expected in (429, 429, 418):
        with pytest.raises(RateLimited) as err:
            limiter.charge_weight("ip", 1, later)
        assert err.value.http_status == expected
    assert err.value.retry_after_s == 240
    later += 300_000
    limiter.charge_weight("ip", 10, later)
    for _ in range(3):
        with pytest.raises(RateLimited) as err:
            limiter.charge_weight("ip", 1, later)
    assert err.value.retry_after_s == 300
    # A day without bans resets the escalation.
    later += 25 * 3600 * 1000
    limiter.charge_weight("ip", 10, later)
    for _ in range(3):
        with pytest.raises(RateLimited) as err:
            limiter.charge_weight("ip", 1, later)
    assert err.value.retry_after_s == 120


def test_order_limits_per_account() -> None:
    limiter = RateLimiter(orders_limit_10s=3, orders_limit_1m=5)
    now = int(T0 * 1000) + 1000
    assert [limiter.charge_order("a", now) for _ in range(3)] == [(1, 1), (2, 2), (3, 3)]
    with pytest.raises(RateLimited) as err:
        limiter.charge_order("a", now)
    assert (err.value.http_status, err.value.code, err.value.retry_after_s) == (429, -1015, 9)
    assert err.value.msg == "Too many new orders; current limit is 3 orders per 10 SECOND."
    assert limiter.charge_order("b", now) == (1, 1)  # per account
    assert limiter.charge_order("a", now + 10_000) == (1, 5)
    with pytest.raises(RateLimited) as err:
        limiter.charge_order("a", now + 10_000)
    assert err.value.msg == "Too many new orders; current limit is 5 orders per 1 MINUTE."
    assert err.value.retry_after_s == 49


def test_klines_weight_by_limit() -> None:
    assert [klines_weight({"limit": str(n)}) for n in (1, 99, 100, 499, 500, 1000, 1001, 1500)] == [
        1,
        1,
        2,
        2,
        5,
        5,
        10,
        10,
    ]
    assert klines_weight({}) == 5 and klines_weight({"limit": "x"}) == 5


async def _req(
    session: aiohttp.ClientSession, method: str, url: str, data: str | None = None
) -> tuple[int, Any, Any]:
    headers = {"X-MBX-APIKEY": KEY}
    if data is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    async with session.request(method, url, data=data, headers=headers) as resp:
        return resp.status, await resp.json(), resp.headers


def test_weights_and_headers_over_http() -> None:
    clock = Clock()

    async def scenario() -> None:
        async with running_app(FakeService(), clock=clock) as (url, _app), aiohttp.ClientSession() as s:
            used = 0

            async def check(method: str, path: str, weight: int, data: str | None = None) -> Any:
                nonlocal used
                status, body, headers = await _req(s, method, f"{url}{path}", data)
                used += weight
                assert headers["X-MBX-USED-WEIGHT-1M"] == str(used), (path, status, body)
                return status, body, headers

            await check("GET", "/fapi/v1/ping", 1)
            await check("GET", "/fapi/v1/ticker/price", 2)
            await check("GET", "/fapi/v1/ticker/price?symbol=BTCUSDT", 1)
            await check("GET", "/fapi/v2/ticker/price", 2)
            await check("GET", "/fapi/v1/ticker/24hr", 40)
            await check("GET", "/fapi/v1/premiumIndex", 10)
            await check("GET", "/fapi/v1/klines?symbol=BTCUSDT&interval=5m", 5)
            await check("GET", "/fapi/v1/klines?symbol=BTCUSDT&interval=5m&limit=1500", 10)
            await check("GET", f"/fapi/v1/openOrders?{signed({}, ts=clock.ms)}", 40)
            await check("GET", f"/fapi/v1/openOrders?{signed({'symbol': 'BTCUSDT'}, ts=clock.ms)}", 1)
            await check("GET", f"/fapi/v1/userTrades?{signed({'symbol': 'BTCUSDT'}, ts=clock.ms)}", 5)
            await check("GET", f"/fapi/v3/account?{signed({}, ts=clock.ms)}", 5)
            await check("GET", f"/fapi/v1/positionSide/dual?{signed({}, ts=clock.ms)}", 30)
            await check("GET", "/fapi/v3/account", 5)  # refused (no signature) but still charged
            await check("GET", "/nope", 1)
            order = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.01"}
            status, _, headers = await check("POST", "/fapi/v1/order", 0, signed(order, ts=clock.ms))
            assert status == 200
            assert (headers["X-MBX-ORDER-COUNT-10S"], headers["X-MBX-ORDER-COUNT-1M"]) == ("1", "1")
            status, _, headers = await check(
                "POST", "/fapi/v1/order", 0, signed({"symbol": "BTCUSDT"}, ts=clock.ms)
            )
            assert status == 400  # refused by the service, still an order as counted
            assert (headers["X-MBX-ORDER-COUNT-10S"], headers["X-MBX-ORDER-COUNT-1M"]) == ("2", "2")
            clock.now += 10
            status, _, headers = await check("POST", "/fapi/v1/order", 0, signed(order, ts=clock.ms))
            assert (headers["X-MBX-ORDER-COUNT-10S"], headers["X-MBX-ORDER-COUNT-1M"]) == ("1", "3")
            status, _, headers = await check("GET", "/fapi/v1/ping", 1)
            assert "X-MBX-ORDER-COUNT-10S" not in headers
            clock.now += 60  # next minute: the weight starts again
            status, _, headers = await _req(s, "GET", f"{url}/fapi/v1/ping")
            assert headers["X-MBX-USED-WEIGHT-1M"] == "1"

    asyncio.run(scenario())


def test_429_then_418_over_http() -> None:
    clock = Clock()
    transport = settings(weight_limit_1m=5, ban_after_429s=2, orders_limit_10s=2)

    async def scenario() -> None:
        async with (
            running_app(FakeService(), transport, clock=clock) as (url, _app),
            aiohttp.ClientSession() as s,
        ):
            for _ in range(5):
                status, _, _ = await _req(s, "GET", f"{url}/fapi/v1/ping")
                assert status == 200
            for _ in range(2):
                status, body, headers = await _req(s, "GET", f"{url}/fapi/v1/ping")
                assert (status, body["code"], headers["Retry-After"]) == (429, -1003, "59")
            status, body, headers = await _req(s, "GET", f"{url}/fapi/v1/time")
            assert (status, body["code"], headers["Retry-After"]) == (418, -1003, "120")
            assert body["msg"].startswith("Way too many requests; IP banned until ")
            status, _, headers = await _req(s, "GET", f"{url}/nope")
            assert (status, headers["Retry-After"]) == (418, "120")
            clock.now += 121
            status, _, _ = await _req(s, "GET", f"{url}/fapi/v1/ping")
            assert status == 200
            order = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.01"}
            for expected in (200, 200, 429):
                status, body, headers = await _req(
                    s, "POST", f"{url}/fapi/v1/order", signed(order, ts=clock.ms)
                )
                assert status == expected, body
            assert body == {
                "code": -1015,
                "msg": "Too many new orders; current limit is 2 orders per 10 SECOND.",
            }
            assert (
                headers["X-MBX-ORDER-COUNT-10S"] == "3" and headers["Retry-After"] == "8"
            )  # 2 s into the 10 s window

    asyncio.run(scenario())
