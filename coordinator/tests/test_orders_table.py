"""The transition table: every row, the rows venues force, and random event sequences."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.orders import (
    FINAL_STATES,
    TRANSITIONS,
    EventKind,
    Fill,
    IllegalTransition,
    InconsistentEvent,
    LocalEvent,
    OrderState,
    OrderUpdate,
    OverfillError,
    VenueStatus,
    apply,
    event_from_json,
    event_to_json,
    replay,
)
from coordinator.orders.events import Event
from coordinator.orders.states import CORRECTIONS, reachable_states
from coordinator.tests.orders_support import CID, Events, event_of_kind, new_order, order_in

ROWS = sorted(TRANSITIONS.items(), key=lambda item: (item[0][0].value, item[0][1].value))


@pytest.mark.parametrize(("row", "target"), ROWS, ids=[f"{s.value}+{k.value}" for (s, k), _ in ROWS])
def test_each_row_of_the_table(row: tuple[OrderState, EventKind], target: OrderState) -> None:
    state, kind = row
    events = Events()
    order = order_in(state, events)
    transition = apply(order, event_of_kind(kind, order, events))
    assert (transition.before, transition.kind, transition.after) == (state, kind, target)
    assert transition.late == (state in FINAL_STATES)


MISSING = [
    (state, kind)
    for state in OrderState
    for kind in EventKind
    if (state, kind) not in TRANSITIONS
    and (state, kind) not in CORRECTIONS
    and not (
        kind is EventKind.FILL_SEEN and state in (OrderState.PENDING, OrderState.SUBMITTED, OrderState.NEW)
    )
    and not (kind is EventKind.FILL and state is OrderState.FILLED)
    and not (kind is EventKind.LOST and state is not OrderState.UNKNOWN)
]


@pytest.mark.parametrize(("state", "kind"), MISSING, ids=[f"{s.value}+{k.value}" for s, k in MISSING])
def test_moves_not_in_the_table_raise(state: OrderState, kind: EventKind) -> None:
    events = Events()
    order = order_in(state, events)
    with pytest.raises(IllegalTransition):
        apply(order, event_of_kind(kind, order, events))


def test_every_state_is_reachable_and_every_non_final_state_can_end() -> None:
    assert reachable_states() == frozenset(OrderState)
    for state in OrderState:
        assert reachable_states(state) & FINAL_STATES, state


def test_happy_path() -> None:
    ev = Events()
    order = new_order()
    steps = [ev.local(EventKind.SEND), ev.status(VenueStatus.NEW, Decimal(0)), ev.fill(Decimal("0.25")),
             ev.fill(Decimal("0.75"))]  # fmt: skip
    states = []
    for event in steps:
        order = apply(order, event).order
        states.append(order.state)
    assert states == [OrderState.SUBMITTED, OrderState.NEW, OrderState.PARTIALLY_FILLED, OrderState.FILLED]
    assert order.executed_qty == Decimal(1)
    assert order.avg_price == Decimal(30000)


def test_rejected_before_sending() -> None:
    transition = apply(new_order(), LocalEvent(CID, EventKind.REJECT_LOCAL, 5, reason="MIN_NOTIONAL"))
    assert transition.after is OrderState.REJECTED


def test_fill_after_cancel_beyond_what_the_cancel_reported_reopens() -> None:
    ev = Events()
    order = order_in(OrderState.CANCELED, ev)  # canceled with 0.4 executed
    transition = apply(order, ev.fill(Decimal("0.1")))
    assert transition.after is OrderState.PARTIALLY_FILLED
    assert transition.reopened and transition.late and transition.corrected
    transition = apply(transition.order, ev.fill(Decimal("0.5")))
    assert transition.after is OrderState.FILLED


def test_trade_detail_of_a_fill_the_cancel_counted_keeps_it_canceled() -> None:
    ev = Events()
    order = apply(order_in(OrderState.NEW, ev), ev.status(VenueStatus.CANCELED, Decimal("0.3"))).order
    assert (order.state, order.executed_qty) == (OrderState.CANCELED, Decimal("0.3"))
    transition = apply(order, ev.fill(Decimal("0.3")))
    assert (transition.kind, transition.after) == (EventKind.FILL_SEEN, OrderState.CANCELED)
    assert transition.order.executed_qty == Decimal("0.3") and len(transition.order.fills) == 1


def test_duplicate_fill_is_a_no_op() -> None:
    ev = Events()
    order = order_in(OrderState.NEW, ev)
    fill = ev.fill(Decimal("0.4"))
    once = apply(order, fill).order
    twice = apply(once, fill)
    assert twice.duplicate and twice.order == once and not twice.changed and twice.new_fill is None
    redelivered = Fill(CID, fill.trade_id, fill.qty, fill.price, fill.time_ms + 5, "rest")
    assert apply(once, redelivered).order == once


def test_same_trade_id_with_other_quantity_is_inconsistent() -> None:
    ev = Events()
    once = apply(order_in(OrderState.NEW, ev), ev.fill(Decimal("0.4"))).order
    bad = Fill(CID, once.fills[0].trade_id, Decimal("0.5"), Decimal("30000"), 9_999, "rest")
    with pytest.raises(InconsistentEvent):
        apply(once, bad)


def test_overfill_raises_for_fills_and_for_venue_reports() -> None:
    ev = Events()
    order = apply(order_in(OrderState.NEW, ev), ev.fill(Decimal("0.6"))).order
    with pytest.raises(OverfillError):
        apply(order, ev.fill(Decimal("0.5")))
    with pytest.raises(OverfillError):
        apply(order, ev.status(VenueStatus.PARTIALLY_FILLED, Decimal("1.1")))
    with pytest.raises(InconsistentEvent):
        apply(order, ev.status(VenueStatus.FILLED, Decimal("0.9")))


def test_out_of_order_reports_do_not_move_backwards() -> None:
    ev = Events()
    stale_new = ev.status(VenueStatus.NEW, Decimal(0))
    stale_partial = ev.status(VenueStatus.PARTIALLY_FILLED, Decimal("0.3"))
    order = apply(order_in(OrderState.SUBMITTED, ev), ev.status(VenueStatus.FILLED, Decimal(1))).order
    for late in (stale_partial, stale_new):
        transition = apply(order, late)
        assert transition.after is OrderState.FILLED and transition.order.executed_qty == Decimal(1)
    # a cumulative report and fills reconcile in either order
    order = apply(order_in(OrderState.NEW, ev), ev.status(VenueStatus.PARTIALLY_FILLED, Decimal("0.5"))).order
    order = apply(order, ev.fill(Decimal("0.2"))).order
    assert (order.state, order.executed_qty) == (OrderState.PARTIALLY_FILLED, Decimal("0.5"))
    order = apply(order, ev.fill(Decimal("0.3"))).order
    assert order.executed_qty == Decimal("0.5")
    order = apply(order, ev.fill(Decimal("0.5"))).order
    assert (order.state, order.executed_qty) == (OrderState.FILLED, Decimal(1))


def test_fill_or_cancel_while_the_ack_is_lost() -> None:
    ev = Events()
    assert (
        apply(order_in(OrderState.SUBMITTED, ev), ev.fill(Decimal("0.2"))).after
        is OrderState.PARTIALLY_FILLED
    )
    unknown = apply(order_in(OrderState.SUBMITTED, ev), ev.local(EventKind.UNKNOWN_OUTCOME)).order
    assert apply(unknown, ev.status(VenueStatus.CANCELED, Decimal(0))).after is OrderState.CANCELED
    assert apply(unknown, ev.fill(Decimal(1))).after is OrderState.FILLED


def test_unknown_then_found_or_lost() -> None:
    ev = Events()
    unknown = apply(order_in(OrderState.SUBMITTED, ev), ev.local(EventKind.UNKNOWN_OUTCOME)).order
    found = OrderUpdate(CID, VenueStatus.NEW, 9_000, "rest", exchange_order_id="42", executed_qty=Decimal(0))
    assert apply(unknown, found).order.exchange_order_id == "42"
    with pytest.raises(InconsistentEvent):  # lost needs at least one not-found reply
        apply(unknown, ev.local(EventKind.LOST))
    order = unknown
    for _ in range(3):
        order = apply(order, ev.local(EventKind.QUERY_NOT_FOUND)).order
    assert (order.state, order.not_found_count) == (OrderState.UNKNOWN, 3)
    lost = apply(order, ev.local(EventKind.LOST))
    assert lost.after is OrderState.NOT_FOUND and lost.order.is_final
    late = apply(lost.order, found)
    assert late.after is OrderState.NEW and late.reopened and late.order.not_found_count == 0


def test_a_second_exchange_id_is_inconsistent() -> None:
    ev = Events()
    order = apply(order_in(OrderState.SUBMITTED, ev), OrderUpdate(CID, VenueStatus.NEW, 1, "rest", "1")).order
    with pytest.raises(InconsistentEvent):
        apply(order, OrderUpdate(CID, VenueStatus.NEW, 2, "stream", "2"))


def test_algo_order_close_position_trigger_and_finish() -> None:
    ev = Events()
    order = apply(new_order(None, close_position=True), ev.local(EventKind.SEND)).order
    order = apply(order, OrderUpdate(CID, VenueStatus.NEW, 10, "rest", algo_id="77")).order
    trig = apply(
        order, OrderUpdate(CID, VenueStatus.TRIGGERED, 11, "stream", exchange_order_id="5", algo_id="77")
    )
    assert (trig.after, trig.order.triggered_ms, trig.order.exchange_order_id) == (OrderState.NEW, 11, "5")
    order = apply(trig.order, ev.fill(Decimal("0.3"))).order
    assert order.state is OrderState.PARTIALLY_FILLED
    done = apply(order, OrderUpdate(CID, VenueStatus.FINISHED, 12, "stream", executed_qty=Decimal("0.3")))
    assert done.after is OrderState.FILLED
    assert (
        apply(done.order, ev.fill(Decimal("0.1"))).after is OrderState.FILLED
    )  # trade detail after FINISHED
    untouched = apply(new_order(None, close_position=True), ev.local(EventKind.SEND)).order
    assert apply(untouched, OrderUpdate(CID, VenueStatus.FINISHED, 13, "rest")).after is OrderState.CANCELED


def test_events_are_frozen_and_validated() -> None:
    fill = Events().fill(Decimal("0.1"))
    with pytest.raises(AttributeError):
        fill.qty = Decimal(2)  # type: ignore[misc]
    with pytest.raises(TypeError):
        Fill(CID, 1, 0.1, Decimal(1), 1, "rest")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Fill(CID, 1, Decimal(0), Decimal(1), 1, "rest")
    with pytest.raises(ValueError):
        OrderUpdate(CID, VenueStatus.FILLED, 1, "rest")
    with pytest.raises(ValueError):
        LocalEvent(CID, EventKind.ACK, 1)


# --- properties over random event sequences

QTYS = st.sampled_from([Decimal(v) for v in ("0.1", "0.2", "0.3", "0.5", "0.7")])
CUMS = st.sampled_from([Decimal(v) for v in ("0", "0.1", "0.3", "0.5", "0.8", "1", "1.2")])


@st.composite
def events(draw: st.DrawFn) -> Event:
    time_ms = draw(st.integers(1_000, 10_000))
    choice = draw(st.sampled_from(["local", "status", "fill"]))
    if choice == "local":
        kinds = [EventKind.SEND, EventKind.REJECT_LOCAL, EventKind.UNKNOWN_OUTCOME, EventKind.QUERY_NOT_FOUND,
                 EventKind.LOST]  # fmt: skip
        return LocalEvent(CID, draw(st.sampled_from(kinds)), time_ms)
    if choice == "status":
        status = draw(st.sampled_from(list(VenueStatus)))
        needs_qty = status in (VenueStatus.PARTIALLY_FILLED, VenueStatus.FILLED)
        cum = draw(CUMS) if needs_qty else draw(st.one_of(st.none(), CUMS))
        return OrderUpdate(CID, status, time_ms, draw(st.sampled_from(["rest", "stream"])), executed_qty=cum)
    return Fill(CID, draw(st.integers(1, 12)), draw(QTYS), Decimal("30000"), time_ms, "stream")


@settings(max_examples=400, deadline=None)
@given(st.lists(events(), max_size=40), st.booleans())
def test_random_sequences_stay_in_the_table(sequence: list[Event], close_position: bool) -> None:
    order = new_order(None if close_position else Decimal(1), close_position=close_position)
    reachable = reachable_states()
    accepted: list[Event] = []
    for event in sequence:
        try:
            transition = apply(order, event)
        except IllegalTransition:
            continue  # refused: the order is untouched (apply is pure)
        if transition.correction is not None:  # two moves: final -> UNKNOWN -> the report's state
            step = transition.correction
            assert (step.before, step.kind) == (transition.before, EventKind.CORRECTION)
            assert (transition.before, transition.kind) in CORRECTIONS
            assert TRANSITIONS[(step.before, step.kind)] is step.after is OrderState.UNKNOWN
            assert TRANSITIONS[(step.after, transition.kind)] is transition.after
        else:
            assert TRANSITIONS[(transition.before, transition.kind)] is transition.after
        order = transition.order
        accepted.append(event)
        assert order.state in reachable
        if order.qty is not None:
            assert order.executed_qty <= order.qty
        assert order.executed_qty == max(order.filled_qty_from_fills, order.venue_executed_qty)
        assert len(order.trade_ids) == len(order.fills)
    assert replay(order, accepted) == order
    assert replay(replay(order, accepted), accepted) == order
    assert [event_from_json(event_to_json(e)) for e in accepted] == accepted


@pytest.mark.parametrize(
    ("state", "kind"), sorted(CORRECTIONS), ids=[f"{s.value}+{k.value}" for s, k in sorted(CORRECTIONS)]
)
def test_a_report_contradicting_a_final_state_is_applied_through_a_correction(
    state: OrderState, kind: EventKind
) -> None:
    events = Events()
    order = order_in(state, events)
    transition = apply(order, event_of_kind(kind, order, events))
    step = transition.correction
    assert step is not None and transition.corrected
    assert (step.before, step.kind, step.after) == (state, EventKind.CORRECTION, OrderState.UNKNOWN)
    assert isinstance(step.event, LocalEvent) and state.value in step.event.reason
    assert transition.before is state and transition.kind is kind
    assert transition.after is TRANSITIONS[(OrderState.UNKNOWN, kind)]
    assert apply(apply(order, step.event).order, transition.event).order == transition.order  # as replayed
