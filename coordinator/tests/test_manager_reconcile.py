"""Reconciliation at start against the REAL paper exchange: every difference resolved and reported."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

from coordinator.exchange.facade import FuturesExchange
from coordinator.orders import OrderKind, OrderState, OrderType, OrderUpdate, Side, VenueStatus
from coordinator.orders.brackets import latest_legs
from coordinator.tests.test_exchange_support import (
    SYMBOL,
    candles,  # noqa: F401 - fixture
    make_client,
)
from coordinator.tests.test_manager_support import exchange_config, paper_secrets, venue


def test_restart_reconciles_every_difference_and_reports_it(
    candles: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with venue(candles, tmp_path) as v:
            first = v.exchange
            placed = await first.place_order(
                SYMBOL, Side.BUY, Decimal("0.01"), Decimal("43000"), Decimal("46000")
            )
            legs = latest_legs(first.store.orders_of_intent(placed.intent.intent_id))
            stop, take = legs[OrderKind.STOP_LOSS], legs[OrderKind.TAKE_PROFIT]
            # the crash: a PENDING order never sent, a take-profit seen triggered long ago
            pending_intent = first.store.create_intent(SYMBOL, Side.SELL, Decimal("0.01"))
            pending = first.store.create_order(
                pending_intent.intent_id,
                OrderKind.ENTRY,
                side=Side.SELL,
                type=OrderType.MARKET,
                qty=Decimal("0.01"),
            )
            await first.monitor.stop()
            if first.stream is not None:
                await first.stream.stop()
            old = first.manager.now_ms() - 600_000
            first.store.record(OrderUpdate(take.client_order_id, VenueStatus.TRIGGERED, old, "stream"))

            # while we were down: our stop vanished, a hand-placed order, an order with our prefix
            other = await make_client(v.url)
            try:
                await other.cancel_algo_order(client_algo_id=stop.client_order_id)
                await other.new_order(
                    SYMBOL, "BUY", "LIMIT", Decimal("0.01"), Decimal("40000"), client_order_id="manual-1"
                )
                stray = "xy-0123456789abcdef0123-e1"
                await other.new_order(
                    SYMBOL, "BUY", "LIMIT", Decimal("0.01"), Decimal("40000"), client_order_id=stray
                )
            finally:
                await other.close()
            await first.client.close()
            first.store.close()

            second = await FuturesExchange.create(
                exchange_config(v.url), paper_secrets(), tmp_path / "xylen.db", use_stream=False
            )
            try:
                result = await second.start()
                kinds = result.counts()
                assert kinds["pending_never_sent"] == 1
                assert kinds["stale_state"] == 1  # the stop: NEW in SQLite, CANCELED on the exchange
                assert kinds["stale_trigger"] == 1
                assert kinds["foreign_order"] == 1 and kinds["unknown_ours"] == 1
                assert kinds["unprotected_position"] == 1
                assert second.store.get_order(pending.client_order_id).state is OrderState.REJECTED  # type: ignore[union-attr]

                legs = latest_legs(second.store.orders_of_intent(placed.intent.intent_id))
                new_stop, new_take = legs[OrderKind.STOP_LOSS], legs[OrderKind.TAKE_PROFIT]
                assert (new_stop.attempt, new_stop.state) == (2, OrderState.NEW)
                assert (new_take.attempt, new_take.state) == (2, OrderState.NEW)
                algos = {a.clientAlgoId for a in await second.client.get_open_algo_orders(SYMBOL)}
                assert algos == {new_stop.client_order_id, new_take.client_order_id}
                open_ids = {o.clientOrderId for o in await second.client.get_open_orders(SYMBOL)}
                assert open_ids == {"manual-1"}  # foreign: left alone; ours but unknown: cancelled

                rows = second.store.connection.execute(
                    "SELECT kind, resolution FROM reconciliation_report WHERE run_id = ?", (result.run_id,)
                ).fetchall()
                assert len(rows) == len(result.differences) >= 6
                summary = second.store.connection.execute(
                    "SELECT summary FROM reconciliation_runs WHERE run_id = ?", (result.run_id,)
                ).fetchone()[0]
                assert summary == result.summary() and "unknown_ours=1" in summary

                again = await second.reconciler.run()  # a second pass finds nothing left to do
                assert again.counts().keys() <= {"foreign_order"}, again.summary()
            finally:
                await second.stop()

    asyncio.run(scenario())


def test_restart_fetches_the_fills_of_an_execution_whose_trade_events_were_never_seen(
    candles: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The crash between an order's reply (FILLED, recorded) and the stream's trade events: no
    stream here, so the entry is FILLED in SQLite without fills, as after a SIGKILL at that point."""

    async def scenario() -> None:
        async with venue(candles, tmp_path, use_stream=False) as v:
            first = v.exchange
            placed = await first.place_order(
                SYMBOL, Side.BUY, Decimal("0.01"), Decimal("43000"), Decimal("46000")
            )
            entry = first.store.get_order(placed.entry.client_order_id)
            assert entry is not None and entry.state is OrderState.FILLED
            assert entry.executed_qty == Decimal("0.01") and entry.fills == ()
            assert [o.client_order_id for o in first.store.orders_missing_fills()] == [entry.client_order_id]
            await first.stop()

            second = await FuturesExchange.create(
                exchange_config(v.url), paper_secrets(), tmp_path / "xylen.db", use_stream=False
            )
            try:
                result = await second.start()
                (diff,) = [d for d in result.differences if d.kind == "missing_fills"]
                assert diff.client_order_id == entry.client_order_id
                assert diff.resolution == "fills for 0.010 from userTrades"
                after = second.store.get_order(entry.client_order_id)
                assert after is not None and sum(f.qty for f in after.fills) == Decimal("0.01")
                (trade,) = await second.client.get_user_trades(
                    SYMBOL, order_id=int(after.exchange_order_id or 0)
                )
                assert after.fills[0].trade_id == trade.id and after.fills[0].price == trade.price
                assert second.store.orders_missing_fills() == []
                again = await second.reconciler.run()
                assert "missing_fills" not in again.counts()
            finally:
                await second.stop()

    asyncio.run(scenario())
