"""Pure parts of the order manager: bracket rules, venue translation, the supervised task group."""

from __future__ import annotations

import asyncio
import dataclasses
from decimal import Decimal

import pytest

from coordinator.exchange.errors import RejectedError
from coordinator.exchange.schemas import AlgoOrder, OrderUpdateData, UserTrade
from coordinator.exchange.schemas import Order as WireOrder
from coordinator.orders import Fill, Intent, IntentStatus, Order, OrderKind, OrderState, OrderType, Side
from coordinator.orders.brackets import ActionKind, check_prices, fired, holds, is_protected, plan
from coordinator.orders.events import OrderUpdate, VenueStatus
from coordinator.orders.monitor import supervise
from coordinator.orders.venue_events import (
    events_from_order_trade,
    fill_from_trade,
    update_from_algo,
    update_from_order,
)

INTENT = Intent("i1", "BTCUSDT", Side.BUY, Decimal("0.01"), 0, Decimal("40000"), Decimal("50000"))


def order(kind: OrderKind, state: OrderState, executed: str = "0", **changes: object) -> Order:
    algo = kind in (OrderKind.STOP_LOSS, OrderKind.TAKE_PROFIT)
    base = Order(
        client_order_id=f"c-{kind.value}-{changes.get('attempt', 1)}",
        intent_id="i1",
        kind=kind,
        attempt=1,
        symbol="BTCUSDT",
        side=Side.BUY if kind is OrderKind.ENTRY else Side.SELL,
        type=OrderType.STOP_MARKET if algo else OrderType.MARKET,
        qty=None if algo else Decimal("0.01"),
        created_ms=0,
        close_position=algo,
        state=state,
        executed_qty=Decimal(executed),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def kinds(actions: list[object]) -> list[ActionKind]:
    return [a.kind for a in actions]  # type: ignore[attr-defined]


def test_filled_entry_gets_stop_and_take_profit() -> None:
    entry = order(OrderKind.ENTRY, OrderState.FILLED, "0.01")
    assert kinds(plan(INTENT, [entry])) == [ActionKind.PLACE_STOP, ActionKind.PLACE_TAKE_PROFIT]
    stop = order(OrderKind.STOP_LOSS, OrderState.NEW)
    assert kinds(plan(INTENT, [entry, stop])) == [ActionKind.PLACE_TAKE_PROFIT]


def test_partial_fill_is_protected_while_the_rest_works() -> None:
    entry = order(OrderKind.ENTRY, OrderState.PARTIALLY_FILLED, "0.004")
    assert kinds(plan(INTENT, [entry])) == [ActionKind.PLACE_STOP, ActionKind.PLACE_TAKE_PROFIT]
    assert plan(INTENT, [order(OrderKind.ENTRY, OrderState.NEW)]) == []


def test_fired_leg_cancels_the_other_and_the_entry_rest_then_closes() -> None:
    entry = order(OrderKind.ENTRY, OrderState.PARTIALLY_FILLED, "0.004")
    stop = order(OrderKind.STOP_LOSS, OrderState.FILLED, "0.004", triggered_ms=5)
    take = order(OrderKind.TAKE_PROFIT, OrderState.NEW)
    actions = plan(INTENT, [entry, stop, take])
    assert kinds(actions) == [ActionKind.CANCEL, ActionKind.CANCEL]
    assert {a.client_order_id for a in actions} == {entry.client_order_id, take.client_order_id}
    done = [
        dataclasses.replace(entry, state=OrderState.CANCELED),
        stop,
        dataclasses.replace(take, state=OrderState.CANCELED),
    ]
    assert kinds(plan(INTENT, done)) == [ActionKind.CLOSE_INTENT]
    assert plan(INTENT, done)[0].status is IntentStatus.CLOSED


def test_triggered_but_working_waits_and_a_dead_trigger_is_replaced() -> None:
    entry = order(OrderKind.ENTRY, OrderState.FILLED, "0.01")
    take = order(OrderKind.TAKE_PROFIT, OrderState.NEW)
    working = order(OrderKind.STOP_LOSS, OrderState.NEW, triggered_ms=5)
    assert fired(working) and kinds(plan(INTENT, [entry, working, take])) == [ActionKind.CANCEL]
    dead = dataclasses.replace(working, state=OrderState.CANCELED)
    assert not fired(dead) and not is_protected(INTENT, [entry, dead])
    assert kinds(plan(INTENT, [entry, dead, take])) == [ActionKind.PLACE_STOP]


def test_unfilled_entry_closes_the_intent_and_flat_position_ends_it() -> None:
    rejected = order(OrderKind.ENTRY, OrderState.REJECTED)
    assert plan(INTENT, [rejected])[0].status is IntentStatus.CANCELED
    entry = order(OrderKind.ENTRY, OrderState.FILLED, "0.01")
    stop = order(OrderKind.STOP_LOSS, OrderState.NEW)
    actions = plan(INTENT, [entry, stop], position_qty=Decimal(0))
    assert kinds(actions) == [ActionKind.CANCEL, ActionKind.CLOSE_INTENT]
    assert plan(INTENT, [entry, stop], position_qty=Decimal("0.01")) == plan(INTENT, [entry, stop])
    assert holds(Side.SELL, Decimal("-1")) and not holds(Side.SELL, Decimal("1"))


def test_closed_intent_cancels_live_orders_and_adopted_position_keeps_its_stop() -> None:
    closed = dataclasses.replace(INTENT, status=IntentStatus.CLOSED)
    stop = order(OrderKind.STOP_LOSS, OrderState.NEW)
    assert kinds(plan(closed, [stop])) == [ActionKind.CANCEL]
    adopted = dataclasses.replace(INTENT, take_profit_price=None)
    assert plan(adopted, [stop]) == [] and plan(adopted, []) == []
    gone = dataclasses.replace(stop, state=OrderState.EXPIRED)
    assert kinds(plan(adopted, [gone])) == [ActionKind.PLACE_STOP]


def test_venue_translation() -> None:
    wire = WireOrder(
        orderId=7,
        symbol="BTCUSDT",
        status="PARTIALLY_FILLED",
        clientOrderId="x",
        side="BUY",
        type="LIMIT",
        executedQty=Decimal("0.004"),
        avgPrice=Decimal("100"),
    )
    update = update_from_order(wire, 11, client_order_id="mine")
    assert update == OrderUpdate(
        "mine", VenueStatus.PARTIALLY_FILLED, 11, "rest", "7", None, Decimal("0.004"), Decimal("100")
    )
    algo = AlgoOrder(
        algoId=3, clientAlgoId="s", algoStatus="FINISHED", actualOrderId="9", actualQty=Decimal("0.01")
    )
    found = update_from_algo(algo, 12)
    assert found is not None and (found.algo_id, found.exchange_order_id, found.executed_qty) == (
        "3",
        "9",
        Decimal("0.01"),
    )
    assert (
        update_from_algo(
            AlgoOrder(algoId=3, clientAlgoId="s", algoStatus="NEW", actualOrderId=""), 1
        ).exchange_order_id
        is None
    )  # type: ignore[union-attr]
    data = OrderUpdateData(
        s="BTCUSDT",
        c="x",
        S="BUY",
        o="LIMIT",
        X="FILLED",
        x="TRADE",
        i=7,
        l=Decimal("0.006"),
        L=Decimal("101"),
        z=Decimal("0.01"),
        t=55,
        n=Decimal("0.01"),
        N="USDT",
        T=99,
    )
    fill, status = events_from_order_trade(data, 13, "mine")
    assert isinstance(fill, Fill) and (fill.trade_id, fill.qty, fill.time_ms) == (55, Decimal("0.006"), 99)
    assert isinstance(status, OrderUpdate) and status.status is VenueStatus.FILLED
    trade = UserTrade(id=5, orderId=7, symbol="BTCUSDT", side="BUY", price=Decimal(1), qty=Decimal(2), time=3)
    assert fill_from_trade(trade, "mine").exchange_order_id == "7"


def test_supervise_cancels_the_others_when_one_crashes() -> None:
    stopped: list[str] = []

    async def forever(name: str) -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            stopped.append(name)

    async def crash() -> None:
        await asyncio.sleep(0.01)
        raise RuntimeError("boom")

    async def scenario() -> None:
        with pytest.raises(RuntimeError, match="boom"):
            await supervise(
                {"a": lambda: forever("a"), "b": lambda: forever("b"), "c": crash}, shutdown_timeout_s=1.0
            )
        assert sorted(stopped) == ["a", "b"]
        task = asyncio.create_task(supervise({"d": lambda: forever("d")}))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert "d" in stopped

    asyncio.run(scenario())


def test_bracket_prices_on_the_wrong_side_are_refused_locally() -> None:
    check_prices(Side.BUY, Decimal(90), Decimal(110), Decimal(100))
    check_prices(Side.SELL, Decimal(110), Decimal(90), None)
    for args in (
        (Side.BUY, Decimal(110), Decimal(120), Decimal(100)),  # stop above the price
        (Side.BUY, Decimal(90), Decimal(95), Decimal(100)),  # take-profit below the price
        (Side.SELL, Decimal(90), Decimal(110), None),  # crossed
    ):
        with pytest.raises(RejectedError) as err:
            check_prices(*args)
        assert err.value.local and err.value.code == -1102
