"""The order manager against the REAL paper exchange over HTTP: brackets, fills, rejections, races."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

from coordinator.orders import EventKind, IntentStatus, OrderKind, OrderState, OrderType, Side
from coordinator.orders.brackets import latest_legs
from coordinator.tests.test_exchange_support import (
    SYMBOL,
    candles,  # noqa: F401 - fixture
)
from coordinator.tests.test_manager_support import order_of, state_of, until, venue

ORDER = "POST /fapi/v1/order"
ALGO = "POST /fapi/v1/algoOrder"


def test_bracket_fires_on_the_replay_and_the_other_leg_is_cancelled(
    candles: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with venue(candles, tmp_path) as v:
            ex = v.exchange
            assert ex.reconciliation is not None and ex.reconciliation.differences == []
            placed = await ex.place_order(
                SYMBOL, Side.BUY, Decimal("0.01"), Decimal("44000"), Decimal("44400")
            )
            assert placed.entry.state is OrderState.FILLED and not placed.reason
            legs = latest_legs(ex.store.orders_of_intent(placed.intent.intent_id))
            stop, take = legs[OrderKind.STOP_LOSS], legs[OrderKind.TAKE_PROFIT]
            assert stop.state is OrderState.NEW and take.state is OrderState.NEW
            assert stop.close_position and stop.type is OrderType.STOP_MARKET and stop.side is Side.SELL
            on_venue = {a.clientAlgoId: a for a in await ex.client.get_open_algo_orders(SYMBOL)}
            assert set(on_venue) == {stop.client_order_id, take.client_order_id}
            assert on_venue[stop.client_order_id].closePosition

            for _ in range(40):  # the replay rises through 44400 within a few candles
                v.step(0.5)
                await asyncio.sleep(0.05)
                if ex.store.get_intent(placed.intent.intent_id).status is not IntentStatus.OPEN:  # type: ignore[union-attr]
                    break
            await until(
                lambda: state_of(v, take.client_order_id) is OrderState.FILLED, what="take-profit filled"
            )
            await until(
                lambda: state_of(v, stop.client_order_id) is OrderState.CANCELED, what="stop cancelled"
            )
            intent = ex.store.get_intent(placed.intent.intent_id)
            assert intent is not None and intent.status is IntentStatus.CLOSED
            assert await ex.get_open_positions() == [] and await ex.client.get_open_algo_orders() == []
            filled = order_of(v, take.client_order_id)
            assert filled.executed_qty == Decimal("0.010") and len(filled.fills) == 1
            assert v.sent(ORDER) == 1 and v.sent(ALGO) == 2

    asyncio.run(scenario())


def test_partial_fills_of_a_large_resting_limit_are_protected_as_they_come(
    candles: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with venue(candles, tmp_path, balance=Decimal(100_000_000)) as v:
            ex = v.exchange
            qty = Decimal("400")
            placed = await ex.place_order(
                SYMBOL,
                Side.BUY,
                qty,
                Decimal("43000"),
                Decimal("47000"),
                order_type="LIMIT",
                price=Decimal("44215"),
            )
            cid = placed.entry.client_order_id
            assert placed.entry.state is OrderState.NEW
            seen: list[Decimal] = []
            for _ in range(60):
                v.step(1 / 3)
                await asyncio.sleep(0.05)
                executed = order_of(v, cid).executed_qty
                if not seen or executed != seen[-1]:
                    seen.append(executed)
                if executed == qty:
                    break
            entry = order_of(v, cid)
            assert len([q for q in seen if 0 < q < qty]) >= 2, seen  # several partial legs
            assert len(entry.fills) >= 2 and entry.filled_qty_from_fills == entry.executed_qty
            legs = latest_legs(ex.store.orders_of_intent(placed.intent.intent_id))
            assert legs[OrderKind.STOP_LOSS].state is OrderState.NEW  # placed on the first partial fill
            assert legs[OrderKind.STOP_LOSS].attempt == 1
            positions = await ex.get_open_positions()
            assert positions[0].positionAmt == entry.executed_qty

    asyncio.run(scenario())


def test_venue_rejections_post_only_reduce_only_margin_and_local_notional(
    candles: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with venue(candles, tmp_path) as v:
            ex = v.exchange
            # post-only that would take: -5022, no order, no legs, the intent given up
            taker = await ex.place_order(
                SYMBOL,
                Side.BUY,
                Decimal("0.01"),
                Decimal("43000"),
                Decimal("46000"),
                order_type="LIMIT",
                price=Decimal("44300"),
                post_only=True,
            )
            assert taker.rejected and taker.reason.startswith("-5022")
            assert (
                taker.intent.status is IntentStatus.CANCELED
                or ex.store.get_intent(taker.intent.intent_id).status is IntentStatus.CANCELED
            )  # type: ignore[union-attr]
            assert len(ex.store.orders_of_intent(taker.intent.intent_id)) == 1

            # margin: 10 BTC is ~440k notional on a 10k account at 20x
            big = await ex.place_order(SYMBOL, Side.BUY, Decimal("10"), Decimal("43000"), Decimal("46000"))
            assert big.rejected and big.reason.startswith("-2019")

            # notional below MIN_NOTIONAL: refused by the filters, nothing sent
            before = v.sent(ORDER)
            small = await ex.place_order(
                SYMBOL, Side.BUY, Decimal("0.001"), Decimal("43000"), Decimal("46000")
            )
            assert small.rejected and small.reason.startswith("-4164") and v.sent(ORDER) == before
            kinds = [e.kind for e in ex.store.events(small.entry.client_order_id)]
            assert kinds == [EventKind.REJECT_LOCAL]

            # reduce-only with no position: -2022
            intent = ex.store.create_intent(SYMBOL, Side.BUY, Decimal("0.01"))
            close = ex.store.create_order(
                intent.intent_id,
                OrderKind.CLOSE,
                side=Side.SELL,
                type=OrderType.MARKET,
                qty=Decimal("0.010"),
                reduce_only=True,
            )
            reason = await ex.manager.submit(close)
            assert reason.startswith("-2022") and state_of(v, close.client_order_id) is OrderState.REJECTED
            assert v.sent(ALGO) == 0

    asyncio.run(scenario())


def test_cancel_racing_a_fill_ends_consistent_with_the_exchange(
    candles: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with venue(candles, tmp_path, balance=Decimal(100_000_000)) as v:
            ex = v.exchange
            # a small resting buy: the fill happens while the cancel is on its way
            placed = await ex.place_order(
                SYMBOL,
                Side.BUY,
                Decimal("0.01"),
                Decimal("43000"),
                Decimal("46000"),
                order_type="LIMIT",
                price=Decimal("44215"),
            )
            cid = placed.entry.client_order_id
            cancel = asyncio.create_task(ex.cancel_order(cid))
            v.step(1 / 3)  # the path crosses 44215 before the cancel request is read
            after = await cancel
            venue_order = await ex.client.get_order(SYMBOL, client_order_id=cid)
            assert after.state is OrderState.FILLED and venue_order.status == "FILLED"
            await until(lambda: len(order_of(v, cid).fills) == 1, what="the racing fill recorded")
            await until(
                lambda: (
                    latest_legs(ex.store.orders_of_intent(placed.intent.intent_id)).get(OrderKind.STOP_LOSS)
                    is not None
                ),
                what="the filled entry protected",
            )

            # a large one, partly filled when the cancel lands: CANCELED with the partial fill kept
            await ex.close_position(SYMBOL)
            await until(lambda: ex.store.open_intents() == [], what="first intent closed")
            big = await ex.place_order(
                SYMBOL,
                Side.BUY,
                Decimal("400"),
                Decimal("43000"),
                Decimal("47000"),
                order_type="LIMIT",
                price=Decimal("44350"),
            )
            big_id = big.entry.client_order_id
            for _ in range(20):
                v.step(1 / 3)
                await asyncio.sleep(0.05)
                if order_of(v, big_id).executed_qty > 0:
                    break
            cancel = asyncio.create_task(ex.cancel_order(big_id))
            v.step(1 / 3)
            final = await cancel
            venue_big = await ex.client.get_order(SYMBOL, client_order_id=big_id)
            assert final.state.value == venue_big.status
            assert final.executed_qty == venue_big.executedQty > 0
            await until(
                lambda: order_of(v, big_id).filled_qty_from_fills == venue_big.executedQty, what="fills"
            )
            positions = await ex.get_open_positions()
            assert positions[0].positionAmt == venue_big.executedQty

    asyncio.run(scenario())
