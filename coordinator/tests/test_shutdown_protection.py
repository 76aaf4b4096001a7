"""Shutdown never strands a protective order (REAL paper exchange over HTTP).

``FuturesExchange.stop`` is the exchange step of the coordinator's SIGTERM shutdown; it is
called while a position's protection is being placed.  With the
paper exchange's ``latency_ms`` fault on the algo-order endpoint, a stop the monitor re-places
(its first one was cancelled by hand) is still in flight at that moment; with its ``error_rate``
there, no stop can ever be placed.
"""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal
from pathlib import Path

import pytest

from coordinator.orders import OrderKind, OrderState, Side
from coordinator.orders.brackets import latest_legs
from coordinator.orders.store import OrderStore
from coordinator.tests.test_exchange_support import (
    SYMBOL,
    candles,  # noqa: F401 - fixture
    make_client,
)
from coordinator.tests.test_manager_support import until, venue

ALGO = "/fapi/v1/algoOrder"


def test_stop_waits_for_the_stop_in_flight_and_records_its_outcome(
    candles: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        faults = {"latency_ms": {"fixed": 1500, "paths": [ALGO]}}
        async with venue(candles, tmp_path, faults=faults) as v:
            exchange = v.exchange
            placed = await exchange.place_order(
                SYMBOL, Side.BUY, Decimal("0.01"), Decimal("43000"), Decimal("46000")
            )
            assert placed.entry.state is OrderState.FILLED
            first_stop = latest_legs(exchange.store.orders_of_intent(placed.intent.intent_id))[
                OrderKind.STOP_LOSS
            ]
            assert first_stop.state is OrderState.NEW
            # the stop vanishes (cancelled by hand): the monitor sends a new one, held 1.5 s
            other = await make_client(v.url)
            try:
                await other.cancel_algo_order(client_algo_id=first_stop.client_order_id)
            finally:
                await other.close()
            await until(lambda: bool(exchange.manager.inflight), what="the new stop in flight")
            protected = await exchange.stop()  # what SIGTERM does
            assert protected is True

            store = OrderStore.open(tmp_path / "xylen.db")
            try:
                legs = latest_legs(store.orders_of_intent(placed.intent.intent_id))
                assert legs[OrderKind.STOP_LOSS].state is OrderState.NEW
                assert legs[OrderKind.TAKE_PROFIT].state is OrderState.NEW
                stop_id = legs[OrderKind.STOP_LOSS].client_order_id
            finally:
                store.close()
            other = await make_client(v.url)
            try:
                algos = await other.get_open_algo_orders(SYMBOL)
            finally:
                await other.close()
            stops = [a for a in algos if a.orderType == "STOP_MARKET"]
            assert [a.clientAlgoId for a in stops] == [stop_id]  # placed once, known to SQLite

    asyncio.run(scenario())


def test_stop_says_so_and_returns_false_when_a_position_is_left_without_a_stop(
    candles: Path,  # noqa: F811
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        faults = {"error_rate": {"rate": 1.0, "statuses": [503], "paths": [ALGO]}}
        async with venue(candles, tmp_path, faults=faults) as v:
            exchange = v.exchange
            await exchange.place_order(SYMBOL, Side.BUY, Decimal("0.01"), Decimal("43000"), Decimal("46000"))
            await asyncio.sleep(0.3)
            with caplog.at_level(logging.ERROR, logger="coordinator.exchange.facade"):
                protected = await exchange.stop()
            assert protected is False
            lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
            assert any("BTCUSDT position 0.010 is left WITHOUT a stop" in line for line in lines), lines

    asyncio.run(scenario())


def test_stop_cancels_an_entry_resting_on_the_book(
    candles: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A maker entry still resting at SIGTERM would fill while no coordinator watches it, opening a
    position without a stop: the shutdown cancels it on the venue and records the cancel."""

    async def scenario() -> None:
        async with venue(candles, tmp_path) as v:
            exchange = v.exchange
            mark = await exchange.mark_price(SYMBOL)
            price = (mark * Decimal("0.97")).quantize(Decimal("0.1"))  # well below: it rests
            placed = await exchange.place_order(
                SYMBOL, Side.BUY, Decimal("0.01"), price * Decimal("0.98"), price * Decimal("1.05"),
                order_type="LIMIT", price=price.quantize(Decimal("0.1")), post_only=True,
            )  # fmt: skip
            assert placed.entry.state is OrderState.NEW, placed
            other = await make_client(v.url)
            try:
                assert [o.clientOrderId for o in await other.get_open_orders(SYMBOL)] == [
                    placed.entry.client_order_id
                ]
                protected = await exchange.stop()  # what SIGTERM does
                assert protected is True  # no position, nothing to protect
                assert await other.get_open_orders(SYMBOL) == []
                assert await other.get_open_algo_orders(SYMBOL) == []
            finally:
                await other.close()
            store = OrderStore.open(tmp_path / "xylen.db")
            try:
                entry = store.get_order(placed.entry.client_order_id)
                assert entry is not None and entry.state is OrderState.CANCELED, entry
            finally:
                store.close()

    asyncio.run(scenario())
