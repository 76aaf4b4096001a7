"""The client under the paper exchange's faults: 429 storms, clock skew, 5xx, unknown outcomes, timeouts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from coordinator.exchange import NotFoundError, RetryableError, RetryPolicy, UnknownOutcomeError
from coordinator.exchange.client import BinanceFuturesClient
from coordinator.tests.test_exchange_support import (
    SYMBOL,
    candles,  # noqa: F401 - fixture
    last_price,
    make_client,
    paper_exchange,
    transport,
)


def test_429_storm_pauses_everything_until_retry_after_then_succeeds_without_418(
    candles: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    # The server's minute window ends ~2 s after the start, so Retry-After is short.
    shift = (58.0 - time.time() % 60) % 60
    settings = transport(weight_limit_1m=8, ban_after_429s=3)

    async def scenario() -> None:
        async with paper_exchange(
            candles, tmp_path, settings=settings, clock=lambda: time.time() + shift
        ) as (url, _):
            client = await make_client(url)  # time + exchangeInfo: weight 2 (the limiter believes 2400)
            try:
                started = time.monotonic()

                async def worker() -> list[int]:
                    return [len(await client.get_open_orders(SYMBOL)) for _ in range(4)]

                results = await asyncio.gather(worker(), worker(), worker())
                elapsed = time.monotonic() - started
                assert results == [[0] * 4] * 3  # every request succeeded in the end
                statuses = client.transport.statuses
                assert statuses[429] >= 1 and statuses[418] == 0, statuses
                assert client.transport.limiter.pauses >= 1
                assert elapsed >= 0.5  # held until the window turned
            finally:
                await client.close()

    asyncio.run(scenario())


def test_burst_above_the_weight_limit_waits_for_the_next_window_without_429(
    candles: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    # Binance's 2400 per minute, as exchangeInfo says (the paper exchange can enforce a lower
    # weight_limit_1m, but its exchangeInfo always reports 2400, and a low limit would not show the
    # bug: a bucket refilling 40/s sends ~40 weight per second left into a window the header says
    # is full).  The server's clock is shifted (our client learns the offset from /fapi/v1/time) so
    # that its minute ends ~3 s after the start; 70 requests of weight 40 (openOrders without a
    # symbol) are 2800 > 2400: the rest must wait for the server's next minute.
    shift = (57.0 - time.time() % 60) % 60

    def server_s() -> float:
        return time.time() + shift

    async def scenario() -> None:
        async with paper_exchange(candles, tmp_path, clock=server_s) as (url, _):
            client = await make_client(url)  # time + exchangeInfo: weight 2
            limiter = client.transport.limiter
            try:
                boundary_s = (server_s() // 60 + 1) * 60

                async def worker() -> list[int]:
                    return [len(await client.get_open_orders()) for _ in range(10)]

                results = await asyncio.gather(*(worker() for _ in range(7)))
                assert results == [[0] * 10] * 7
                statuses = client.transport.statuses
                assert statuses[429] == 0 and statuses[418] == 0, statuses
                assert limiter.pauses == 0
                assert client.transport.sent["GET /fapi/v1/openOrders"] == 70
                assert server_s() >= boundary_s + 0.9  # held until the server's minute turned (+ margin)
                assert limiter.used_weight is not None and 0 < limiter.used_weight <= 2400
            finally:
                await client.close()

    asyncio.run(scenario())


def test_clock_skew_resyncs_and_retries_once(candles: Path, tmp_path: Path) -> None:  # noqa: F811
    async def scenario() -> None:
        async with paper_exchange(candles, tmp_path, faults={"clock_skew_ms": -3000}) as (url, _):
            client = await make_client(url)
            try:
                assert -3300 < client.transport.time_offset_ms < -2700
                client.transport.time_offset_ms = 0  # our clock drifted: 3 s ahead of the server
                syncs = client.transport.sent["GET /fapi/v1/time"]
                assert await client.get_account_balance()
                assert client.transport.sent["GET /fapi/v1/time"] == syncs + 1
                assert client.transport.sent["GET /fapi/v3/balance"] == 2  # the -1021, then once more
                assert client.transport.statuses[400] == 1
                assert -3300 < client.transport.time_offset_ms < -2700
            finally:
                await client.close()

    asyncio.run(scenario())


def test_unknown_error_after_acceptance_then_found_by_client_order_id(
    candles: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with paper_exchange(candles, tmp_path, faults={"unknown_error_rate": 1.0}) as (url, _):
            client = await make_client(url)
            try:
                price = await last_price(client)
                with pytest.raises(UnknownOutcomeError) as err:
                    await client.new_order(
                        SYMBOL,
                        "BUY",
                        "LIMIT",
                        Decimal("0.01"),
                        price * Decimal("0.98"),
                        client_order_id="t-unknown",
                    )
                assert err.value.status == 503 and "Unknown error" in err.value.msg
                assert client.transport.sent["POST /fapi/v1/order"] == 1  # not retried
                found = await client.get_order(SYMBOL, client_order_id="t-unknown")
                assert found.status == "NEW" and found.origQty == Decimal("0.010")
            finally:
                await client.close()

    asyncio.run(scenario())


def test_5xx_are_retried_for_gets_but_an_order_is_not_blindly_resent(
    candles: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    faults = {"error_rate": {"rate": 0.5, "paths": ["/fapi/v1/openOrders", "/fapi/v1/order"], "seed": 11}}

    async def scenario() -> None:
        async with paper_exchange(candles, tmp_path, faults=faults) as (url, _):
            client = await make_client(
                url, retry=RetryPolicy(attempts=10, base_delay_s=0.001, max_delay_s=0.01)
            )
            try:
                sent = client.transport.sent
                for _ in range(6):
                    assert await client.get_open_orders(SYMBOL) == []
                assert sent["GET /fapi/v1/openOrders"] > 6  # some were answered 5xx and repeated
                assert client.transport.statuses[503] + client.transport.statuses[500] > 0
                price = await last_price(client)
                failures = 0
                for n in range(8):
                    before = sent["POST /fapi/v1/order"]
                    cid = f"t-5xx-{n}"
                    try:
                        await client.new_order(
                            SYMBOL,
                            "BUY",
                            "LIMIT",
                            Decimal("0.01"),
                            price * Decimal("0.9"),
                            client_order_id=cid,
                        )
                    except RetryableError as exc:
                        failures += 1
                        assert exc.status in (500, 503) and exc.code == -1001
                        assert sent["POST /fapi/v1/order"] == before + 1  # raised to the caller, not resent
                        with pytest.raises(NotFoundError):  # ... and it was not executed (-2013)
                            await client.get_order(SYMBOL, client_order_id=cid)
                assert failures > 0
            finally:
                await client.close()

    asyncio.run(scenario())


def test_create_times_out_as_a_retryable_error(candles: Path, tmp_path: Path) -> None:  # noqa: F811
    async def scenario() -> None:
        async with paper_exchange(candles, tmp_path, faults={"latency_ms": 600}) as (url, _):
            with pytest.raises(RetryableError, match="timed out"):
                await make_client(url, timeout_s=0.15, retry=RetryPolicy(attempts=2, base_delay_s=0.01))

    asyncio.run(scenario())


SLOW_PATHS = [
    "/fapi/v1/order",
    "/fapi/v1/algoOrder",
    "/fapi/v1/openOrders",
    "/fapi/v1/openAlgoOrders",
    "/fapi/v1/userTrades",
    "/fapi/v3/balance",
    "/fapi/v3/positionRisk",
    "/fapi/v1/leverage",
    "/fapi/v1/marginType",
    "/fapi/v1/listenKey",
]


def test_every_call_has_a_timeout(candles: Path, tmp_path: Path) -> None:  # noqa: F811
    faults = {"latency_ms": {"fixed": 700, "paths": SLOW_PATHS}}

    async def scenario() -> None:
        async with paper_exchange(candles, tmp_path, faults=faults) as (url, _):
            client = await make_client(url, timeout_s=0.15, retry=RetryPolicy(attempts=2, base_delay_s=0.01))
            try:
                price = await last_price(client)
                placements: list[Callable[[BinanceFuturesClient], Awaitable[Any]]] = [
                    lambda c: c.new_order(SYMBOL, "BUY", "MARKET", Decimal("0.01"), client_order_id="t-slow"),
                    lambda c: c.new_algo_order(
                        SYMBOL, "SELL", "STOP_MARKET", price * Decimal("0.9"), client_algo_id="a"
                    ),
                ]
                for call in placements:
                    started = time.monotonic()
                    with pytest.raises(UnknownOutcomeError, match="may have executed"):
                        await call(client)
                    assert time.monotonic() - started < 0.5  # one attempt, no retry
                reads: list[Callable[[BinanceFuturesClient], Awaitable[Any]]] = [
                    lambda c: c.get_order(SYMBOL, client_order_id="t-slow"),
                    lambda c: c.cancel_order(SYMBOL, client_order_id="t-slow"),
                    lambda c: c.get_algo_order(client_algo_id="a"),
                    lambda c: c.cancel_algo_order(client_algo_id="a"),
                    lambda c: c.get_open_orders(SYMBOL),
                    lambda c: c.get_open_algo_orders(SYMBOL),
                    lambda c: c.get_user_trades(SYMBOL),
                    lambda c: c.get_account_balance(),
                    lambda c: c.get_open_positions(),
                    lambda c: c.set_leverage(SYMBOL, 3),
                    lambda c: c.set_margin_mode(SYMBOL, "isolated"),
                    lambda c: c.create_listen_key(),
                    lambda c: c.keepalive_listen_key("k"),
                    lambda c: c.close_listen_key("k"),
                ]
                for call in reads:
                    with pytest.raises(RetryableError, match="timed out"):
                        await call(client)
                assert client.transport.sent["GET /fapi/v1/order"] == 2  # idempotent: retried once
            finally:
                await client.close()

    asyncio.run(scenario())
