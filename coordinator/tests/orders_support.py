"""Builders shared by the order tests: orders in a given state, events of a given kind."""

from __future__ import annotations

from decimal import Decimal

from coordinator.orders import (
    EventKind,
    Fill,
    LocalEvent,
    Order,
    OrderKind,
    OrderState,
    OrderType,
    OrderUpdate,
    Side,
    VenueStatus,
    apply,
    client_order_id,
)
from coordinator.orders.events import Event

CID = client_order_id("intent-1", OrderKind.ENTRY, 1)
QTY = Decimal("1.000")


def new_order(qty: Decimal | None = QTY, *, close_position: bool = False) -> Order:
    return Order(
        client_order_id=CID,
        intent_id="intent-1",
        kind=OrderKind.ENTRY,
        attempt=1,
        symbol="BTCUSDT",
        side=Side.BUY,
        type=OrderType.MARKET,
        qty=qty,
        created_ms=1_000,
        close_position=close_position,
        updated_ms=1_000,
    )


class Events:
    """Event factory with increasing times and fresh trade ids."""

    def __init__(self) -> None:
        self.time = 2_000
        self.trade = 100

    def _t(self) -> int:
        self.time += 1
        return self.time

    def local(self, kind: EventKind) -> LocalEvent:
        return LocalEvent(CID, kind, self._t())

    def status(self, status: VenueStatus, executed: Decimal | None = None) -> OrderUpdate:
        return OrderUpdate(CID, status, self._t(), "stream", executed_qty=executed)

    def fill(self, qty: Decimal, price: Decimal = Decimal("30000")) -> Fill:
        self.trade += 1
        return Fill(CID, self.trade, qty, price, self._t(), "stream")


_PATHS: dict[OrderState, list[tuple[str, object]]] = {
    OrderState.PENDING: [],
    OrderState.SUBMITTED: [("local", EventKind.SEND)],
    OrderState.NEW: [("local", EventKind.SEND), ("status", VenueStatus.NEW)],
    OrderState.PARTIALLY_FILLED: [("local", EventKind.SEND), ("status", VenueStatus.NEW), ("fill", "0.4")],
    OrderState.FILLED: [("local", EventKind.SEND), ("status", VenueStatus.NEW), ("fill", "1")],
    OrderState.CANCELED: [("local", EventKind.SEND), ("status", VenueStatus.NEW), ("fill", "0.4"),
                          ("status", VenueStatus.CANCELED)],
    OrderState.EXPIRED: [("local", EventKind.SEND), ("status", VenueStatus.NEW), ("fill", "0.4"),
                         ("status", VenueStatus.EXPIRED)],
    OrderState.REJECTED: [("local", EventKind.SEND), ("status", VenueStatus.REJECTED)],
    OrderState.UNKNOWN: [("local", EventKind.SEND), ("status", VenueStatus.NEW), ("fill", "0.4"),
                         ("local", EventKind.QUERY_NOT_FOUND)],
    OrderState.NOT_FOUND: [("local", EventKind.SEND), ("status", VenueStatus.NEW), ("fill", "0.4"),
                           ("local", EventKind.QUERY_NOT_FOUND), ("local", EventKind.LOST)],
}  # fmt: skip


def order_in(state: OrderState, events: Events | None = None) -> Order:
    """An order (qty 1) brought to ``state`` through legal events."""
    factory = events or Events()
    order = new_order()
    for what, arg in _PATHS[state]:
        event: Event
        if what == "local":
            assert isinstance(arg, EventKind)
            event = factory.local(arg)
        elif what == "status":
            assert isinstance(arg, VenueStatus)
            event = factory.status(arg, order.executed_qty)
        else:
            assert isinstance(arg, str)
            event = factory.fill(Decimal(arg))
        order = apply(order, event).order
    assert order.state is state
    return order


def event_of_kind(kind: EventKind, order: Order, events: Events) -> Event:
    """An event that :func:`classify` turns into ``kind`` for ``order``."""
    executed = order.executed_qty
    assert order.qty is not None
    remaining = order.qty - executed
    if kind in (EventKind.SEND, EventKind.REJECT_LOCAL, EventKind.UNKNOWN_OUTCOME, EventKind.QUERY_NOT_FOUND,
                EventKind.LOST, EventKind.CORRECTION):  # fmt: skip
        return events.local(kind)
    if kind is EventKind.FILL:
        return events.fill(remaining / 2)
    if kind is EventKind.FILL_COMPLETE:
        return events.fill(remaining) if remaining else events.status(VenueStatus.FILLED, order.qty)
    if kind is EventKind.FILL_SEEN:
        return events.status(VenueStatus.PARTIALLY_FILLED, executed)
    status = {
        EventKind.ACK: VenueStatus.NEW,
        EventKind.TRIGGER: VenueStatus.TRIGGERED,
        EventKind.REJECT: VenueStatus.REJECTED,
        EventKind.CANCEL: VenueStatus.CANCELED,
        EventKind.EXPIRE: VenueStatus.EXPIRED,
    }[kind]
    return events.status(status, executed)
