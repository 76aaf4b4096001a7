"""The order manager under the paper exchange's faults: 429 storms, unknown outcomes, a silent stream."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

from coordinator.exchange import RetryPolicy
from coordinator.orders import EventKind, OrderKind, OrderState, OrderType, Side
from coordinator.orders.brackets import latest_legs
from coordinator.tests.test_exchange_support import (
    SYMBOL,
    candles,  # noqa: F401 - fixture
    transport,
)
from coordinator.tests.test_manager_support import order_of, until, venue

ORDER = "POST /fapi/v1/order"
ALGO = "POST /fapi/v1/algoOrder"


def test_a_429_storm_delays_orders_but_never_duplicates_them(
    candles: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    shift = (8.5 - time.time() % 10) % 10  # the server's 10 s order window turns ~1.5 s after the start
    settings = transport(orders_limit_10s=3)

    async def scenario() -> None:
        async with venue(
            candles,
            tmp_path,
            settings=settings,
            clock=lambda: time.time() + shift,
            retry=RetryPolicy(attempts=6, base_delay_s=0.01, max_delay_s=0.05),
        ) as v:
            ex = v.exchange
            orders = []
            for _ in range(6):
                intent = ex.store.create_intent(SYMBOL, Side.BUY, Decimal("0.003"))
                orders.append(
                    ex.store.create_order(
                        intent.intent_id,
                        OrderKind.ENTRY,
                        side=Side.BUY,
                        type=OrderType.MARKET,
                        qty=Decimal("0.003"),
                    )
                )
            reasons = await asyncio.gather(*(ex.manager.submit(order) for order in orders))
            assert ex.client.transport.statuses[429] >= 1, ex.client.transport.statuses
            assert reasons == [""] * 6
            assert all(order_of(v, o.client_order_id).state is OrderState.FILLED for o in orders)
            trades = await ex.client.get_user_trades(SYMBOL)
            by_order = Counter(t.orderId for t in trades)
            assert len(by_order) == 6  # one exchange order per client order id: none sent twice
            assert {order_of(v, o.client_order_id).exchange_order_id for o in orders} == {
                str(i) for i in by_order
            }
            assert (await ex.get_open_positions())[0].positionAmt == Decimal("0.018")

    asyncio.run(scenario())


def test_unknown_outcome_after_acceptance_is_resolved_by_client_id_and_never_resent(
    candles: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with venue(candles, tmp_path, faults={"unknown_error_rate": 1.0}) as v:
            ex = v.exchange
            placed = await ex.place_order(
                SYMBOL, Side.BUY, Decimal("0.01"), Decimal("44000"), Decimal("44400")
            )
            entry = order_of(v, placed.entry.client_order_id)
            assert entry.state is OrderState.FILLED and entry.executed_qty == Decimal("0.010")
            kinds = [e.kind for e in ex.store.events(entry.client_order_id)]
            assert kinds[:2] == [EventKind.SEND, EventKind.UNKNOWN_OUTCOME]
            legs = latest_legs(ex.store.orders_of_intent(placed.intent.intent_id))
            for kind in (OrderKind.STOP_LOSS, OrderKind.TAKE_PROFIT):
                leg = legs[kind]
                assert leg.attempt == 1 and leg.state is OrderState.NEW, leg
                assert EventKind.UNKNOWN_OUTCOME in [e.kind for e in ex.store.events(leg.client_order_id)]
            assert v.sent(ORDER) == 1 and v.sent(ALGO) == 2  # each sent once, found by its client id
            assert ex.client.transport.statuses[503] == 3
            assert len(await ex.client.get_open_algo_orders(SYMBOL)) == 2

    asyncio.run(scenario())


def test_a_silent_stream_falls_back_to_polling_within_the_interval(
    candles: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with venue(candles, tmp_path, faults={"ws_drop_rate": 1.0}, poll_interval_seconds=0.5) as v:
            ex = v.exchange
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
            await asyncio.sleep(0.6)  # the stream has been silent for longer than the interval
            v.step(1 / 3)  # fills on the exchange; the event is dropped
            took = await until(lambda: order_of(v, cid).state is OrderState.FILLED, what="poll sees the fill")
            assert took <= 0.5 + 0.5, took  # the poll interval plus one tick
            await until(lambda: len(order_of(v, cid).fills) == 1, what="trade fetched")
            assert order_of(v, cid).fills[0].source == "rest"
            await until(
                lambda: (
                    latest_legs(ex.store.orders_of_intent(placed.intent.intent_id)).get(OrderKind.STOP_LOSS)
                    is not None
                ),
                what="stop placed after the polled fill",
            )
            assert ex.monitor.polls >= 1

    asyncio.run(scenario())
