"""A stateful Hypothesis test of the store, closing and reopening the SQLite file between steps."""

from __future__ import annotations

import shutil
import tempfile
from decimal import Decimal
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from coordinator.orders import (
    EventKind,
    Fill,
    IllegalTransition,
    LiveOrderExists,
    LocalEvent,
    Order,
    OrderKind,
    OrderStore,
    OrderType,
    OrderUpdate,
    Side,
    VenueStatus,
)
from coordinator.orders.states import reachable_states

QTY = Decimal("1")
LOCAL_KINDS = [EventKind.SEND, EventKind.REJECT_LOCAL, EventKind.UNKNOWN_OUTCOME, EventKind.QUERY_NOT_FOUND,
               EventKind.LOST]  # fmt: skip


class StoreMachine(RuleBasedStateMachine):
    """Random intents, orders and venue events; the store is reopened at random."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="xylen-stateful-"))
        self.path = self.dir / "xylen.db"
        self.clock = 1_700_000_000_000
        self.store = OrderStore.open(self.path, synchronous="NORMAL", now_ms=self.tick)
        self.model: dict[str, Order] = {}  # what the returned transitions said
        self.intents: list[str] = []
        self.trade_id = 0

    def tick(self) -> int:
        self.clock += 1
        return self.clock

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule()
    def create_intent(self) -> None:
        intent_id = f"intent-{len(self.intents)}"  # deterministic: hypothesis replays draws
        self.intents.append(self.store.create_intent("BTCUSDT", Side.BUY, QTY, intent_id=intent_id).intent_id)

    @precondition(lambda self: bool(self.intents))
    @rule(data=st.data(), kind=st.sampled_from([OrderKind.ENTRY, OrderKind.STOP_LOSS]))
    def create_order(self, data: st.DataObject, kind: OrderKind) -> None:
        intent_id = data.draw(st.sampled_from(self.intents))
        live = [
            o for o in self.model.values() if o.intent_id == intent_id and o.kind is kind and not o.is_final
        ]
        try:
            order = self.store.create_order(intent_id, kind, side=Side.BUY, type=OrderType.MARKET, qty=QTY)
        except LiveOrderExists:
            assert live, "refused although no live order existed"
            return
        assert not live, "a second live order was created for the same intent and leg"
        self.model[order.client_order_id] = order

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def record(self, data: st.DataObject) -> None:
        cid = data.draw(st.sampled_from(list(self.model)))
        choice = data.draw(st.sampled_from(["local", "status", "fill", "fill_again"]))
        t = self.tick()
        event: LocalEvent | OrderUpdate | Fill
        if choice == "local":
            event = LocalEvent(cid, data.draw(st.sampled_from(LOCAL_KINDS)), t)
        elif choice == "status":
            status = data.draw(st.sampled_from(list(VenueStatus)))
            cum = data.draw(st.sampled_from([Decimal(v) for v in ("0", "0.2", "0.5", "1", "1.5")]))
            event = OrderUpdate(cid, status, t, "stream", executed_qty=cum)
        elif choice == "fill_again" and self.model[cid].fills:
            event = self.model[cid].fills[-1]
        else:
            self.trade_id += 1
            qty = data.draw(st.sampled_from([Decimal(v) for v in ("0.1", "0.25", "0.5", "0.9")]))
            event = Fill(cid, self.trade_id, qty, Decimal("100"), t, "stream")
        try:
            transition = self.store.record(event)
        except IllegalTransition:
            return
        self.model[cid] = transition.order

    @rule()
    def restart(self) -> None:
        self.store.close()
        self.store = OrderStore.open(self.path, synchronous="NORMAL", now_ms=self.tick)

    @invariant()
    def stored_orders_equal_the_model_and_their_replay(self) -> None:
        stored = {order.client_order_id: order for order in self.store.all_orders()}
        assert stored == self.model
        reachable = reachable_states()
        for cid, order in stored.items():
            assert self.store.replay(cid) == order
            assert order.state in reachable
            assert order.qty is None or order.executed_qty <= order.qty

    @invariant()
    def live_orders_are_the_non_final_ones(self) -> None:
        assert {o.client_order_id for o in self.store.live_orders()} == {
            cid for cid, o in self.model.items() if not o.is_final
        }


StoreMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=30, deadline=None)
TestStoreMachine = StoreMachine.TestCase
