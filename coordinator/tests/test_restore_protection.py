"""A restore from a backup never strips a position of its stop (REAL paper exchange over HTTP).

The operator's sequence: a backup is taken, trading goes on (an intent is closed, another opened
with its stop and take-profit), the coordinator is stopped, the backup is restored as documented,
the coordinator starts again and reconciles.  SQLite then knows an intent the exchange has
forgotten and does not know the position the exchange holds, nor its protective orders.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

from coordinator.exchange.facade import FuturesExchange
from coordinator.orders import IntentStatus, OrderKind, OrderState, Side
from coordinator.orders.brackets import latest_legs
from coordinator.storage.backup import backup, restore
from coordinator.tests.test_exchange_support import (
    SYMBOL,
    candles,  # noqa: F401 - fixture
)
from coordinator.tests.test_manager_support import exchange_config, paper_secrets, until, venue


async def _after_restore(candles_dir: Path, tmp_path: Path, second_side: Side) -> None:
    """Backup with intent A open; A closed, B opened (``second_side``) with its bracket; restore."""
    db = tmp_path / "xylen.db"
    async with venue(candles_dir, tmp_path) as v:
        first = v.exchange
        a = await first.place_order(SYMBOL, Side.BUY, Decimal("0.01"), Decimal("43000"), Decimal("46000"))
        await until(lambda: all(
            o.state is OrderState.NEW for o in first.store.orders_of_intent(a.intent.intent_id)
            if o.kind in (OrderKind.STOP_LOSS, OrderKind.TAKE_PROFIT)
        ) and len(first.store.orders_of_intent(a.intent.intent_id)) == 3, what="A's bracket")  # fmt: skip
        saved = backup(db, tmp_path / "backups")

        await first.close_position(SYMBOL)
        await until(
            lambda: first.store.get_intent(a.intent.intent_id).status is not IntentStatus.OPEN,  # type: ignore[union-attr]
            what="A closed",
        )
        stop, take = ("42000", "47000") if second_side is Side.BUY else ("47000", "42000")
        b = await first.place_order(SYMBOL, second_side, Decimal("0.02"), Decimal(stop), Decimal(take))
        await until(lambda: len([
            o for o in first.store.orders_of_intent(b.intent.intent_id) if o.state is OrderState.NEW
        ]) == 2, what="B's bracket")  # fmt: skip
        b_legs = latest_legs(first.store.orders_of_intent(b.intent.intent_id))
        b_stop = b_legs[OrderKind.STOP_LOSS].client_order_id
        await first.stop()

        restore(saved, db)

        second = await FuturesExchange.create(
            exchange_config(v.url), paper_secrets(), db, use_stream=False, symbols=[SYMBOL]
        )
        try:
            result = await second.start()
            sign = 1 if second_side is Side.BUY else -1
            (position,) = [p for p in await second.client.get_open_positions(SYMBOL) if p.positionAmt != 0]
            assert position.positionAmt == sign * Decimal("0.02")

            # the venue: exactly one stop and one take-profit closing the position
            algos = await second.client.get_open_algo_orders(SYMBOL)
            closing = "SELL" if second_side is Side.BUY else "BUY"
            stops = [x for x in algos if x.orderType == "STOP_MARKET"]
            takes = [x for x in algos if x.orderType == "TAKE_PROFIT_MARKET"]
            assert len(stops) == 1 and len(takes) == 1, (result.summary(), algos)
            assert stops[0].side == closing and stops[0].closePosition
            # kept, not cancelled and replaced: B's own stop is still the one working
            assert stops[0].clientAlgoId == b_stop, result.summary()

            # SQLite explains the position: one open intent on the symbol, its live legs are those
            store = second.store
            (intent,) = [i for i in store.open_intents() if i.symbol == SYMBOL]
            assert intent.side is second_side
            live = {o.client_order_id for o in store.orders_of_intent(intent.intent_id) if not o.is_final}
            assert live == {stops[0].clientAlgoId, takes[0].clientAlgoId}
            assert store.get_intent(a.intent.intent_id).status is not IntentStatus.OPEN  # type: ignore[union-attr]
            kinds = result.counts()
            assert kinds["unknown_ours"] == 0, result.summary()
            assert kinds["adopted_position"] == 1, result.summary()

            again = await second.reconciler.run()  # nothing left to do, nothing placed twice
            assert not again.differences, again.summary()
            assert len(await second.client.get_open_algo_orders(SYMBOL)) == 2
        finally:
            await second.stop()


def test_restore_keeps_the_stop_of_a_position_opened_after_the_backup_on_the_other_side(
    candles: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The tester's case: the stale intent (long) claimed the symbol, the short went unprotected."""
    asyncio.run(_after_restore(candles, tmp_path, Side.SELL))


def test_restore_keeps_the_stop_of_a_position_opened_after_the_backup_on_the_same_side(
    candles: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Same direction: the stale intent must not re-protect the position with its old prices."""
    asyncio.run(_after_restore(candles, tmp_path, Side.BUY))


def test_unknown_protective_orders_are_cancelled_only_where_no_position_needs_them(
    candles: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A duplicate stop (the position has its own) and a stop on the wrong side go; the intent's
    own stop stays."""

    async def scenario() -> None:
        db = tmp_path / "xylen.db"
        async with venue(candles, tmp_path, use_stream=False) as v:
            first = v.exchange
            placed = await first.place_order(
                SYMBOL, Side.BUY, Decimal("0.01"), Decimal("43000"), Decimal("46000")
            )
            own_stop = latest_legs(first.store.orders_of_intent(placed.intent.intent_id))[OrderKind.STOP_LOSS]
            duplicate, wrong_side = "xy-0123456789abcdef0123-s1", "xy-0123456789abcdef0124-s1"
            await first.client.new_algo_order(
                SYMBOL, "SELL", "STOP_MARKET", Decimal("42000"), close_position=True, client_algo_id=duplicate
            )
            await first.client.new_algo_order(
                SYMBOL, "BUY", "STOP_MARKET", Decimal("47000"), close_position=True, client_algo_id=wrong_side
            )
            await first.stop()
            second = await FuturesExchange.create(
                exchange_config(v.url), paper_secrets(), db, use_stream=False, symbols=[SYMBOL]
            )
            try:
                result = await second.start()
                resolutions = {d.client_order_id: (d.detail, d.resolution) for d in result.differences}
                assert "duplicate" in resolutions[duplicate][0] and resolutions[duplicate][1] == "cancelled"
                assert "wrong side" in resolutions[wrong_side][0]
                assert resolutions[wrong_side][1] == "cancelled"
                algos = {a.clientAlgoId for a in await second.client.get_open_algo_orders(SYMBOL)}
                assert own_stop.client_order_id in algos and not algos & {duplicate, wrong_side}
            finally:
                await second.stop()

    asyncio.run(scenario())
