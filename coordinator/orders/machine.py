"""The one function that changes an order: :func:`apply` (pure, synchronous, deterministic).

``apply(order, event)`` classifies the event into an :class:`~coordinator.orders.states.EventKind`
(:func:`classify`), looks ``(order.state, kind)`` up in
:data:`~coordinator.orders.states.TRANSITIONS` and returns a :class:`Transition` holding the new
order.  It never mutates its arguments.  It raises:

- :class:`IllegalTransition` for a pair that is not in the table;
- :class:`OverfillError` (a subclass) when a fill or a venue report would make the executed
  quantity exceed the order quantity;
- :class:`InconsistentEvent` (a subclass) when the event contradicts what we know: a second
  exchange id for the same client id, a trade id reported again with another quantity or price,
  ``FILLED`` with an executed quantity other than the order quantity, ``LOST`` before any
  not-found reply.

A venue report that contradicts a final state (a pair in
:data:`~coordinator.orders.states.CORRECTIONS`: a fill after a cancel, an order recorded
``REJECTED`` that the venue acknowledges or fills) is applied in two table moves: the explicit
``CORRECTION`` (``final -> UNKNOWN``, a :class:`LocalEvent` naming the report), then the report
from ``UNKNOWN``.  The returned :class:`Transition` spans both (``previous`` is the order before the
correction) and keeps the first move in ``Transition.correction``.

Quantities: the executed quantity is ``max(sum of fills, highest cumulative quantity the venue
reported)``, so fills and status reports reconcile in either order.  A fill whose ``trade_id`` was
seen before is a duplicate: a no-op (``Transition.duplicate``).  Whether a fill or status report
is ``FILL``, ``FILL_COMPLETE`` or ``FILL_SEEN`` follows from those quantities, which is how a
fill after a cancel is told apart from the trade detail of a fill the cancel already counted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from coordinator.fills import vwap
from coordinator.orders.events import Event, Fill, LocalEvent, OrderUpdate, VenueStatus
from coordinator.orders.models import Order
from coordinator.orders.states import CORRECTIONS, TRANSITIONS, EventKind, OrderState, is_final


class IllegalTransition(Exception):
    """The event may not move the order: the pair is not in the table, or the event is invalid."""

    def __init__(self, order: Order, kind: EventKind | None, detail: str = "") -> None:
        self.client_order_id = order.client_order_id
        self.state = order.state
        self.kind = kind
        kind_text = kind.value if kind is not None else "?"
        message = f"{order.client_order_id}: {order.state.value} + {kind_text}"
        super().__init__(f"{message}: {detail}" if detail else f"{message} is not in the table")


class OverfillError(IllegalTransition):
    """The executed quantity would exceed the order quantity."""


class InconsistentEvent(IllegalTransition):
    """The event contradicts what is already known about the order."""


class _ContradictsFinalState(Exception):
    """Internal: the pair is in ``CORRECTIONS``; :func:`apply` corrects the order first."""

    def __init__(self, order: Order, kind: EventKind) -> None:
        super().__init__(f"venue reports {kind.value} for an order recorded {order.state.value}")
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Transition:
    """The result of :func:`apply`: the order before and after one event."""

    previous: Order
    order: Order
    kind: EventKind
    event: Event
    duplicate: bool = False  # a fill already seen: nothing changed
    correction: Transition | None = None  # the CORRECTION move applied first (final -> UNKNOWN)

    @property
    def before(self) -> OrderState:
        return self.previous.state

    @property
    def after(self) -> OrderState:
        return self.order.state

    @property
    def changed(self) -> bool:
        """Whether anything about the order changed (state, quantities, ids, fills)."""
        return self.order != self.previous

    @property
    def late(self) -> bool:
        """The event reached an order already in a final state (late, duplicate or racing report)."""
        return is_final(self.before)

    @property
    def reopened(self) -> bool:
        """A final order left its final state (fill after cancel, a lost order found): look closer."""
        return is_final(self.before) and not is_final(self.after)

    @property
    def corrected(self) -> bool:
        """The event contradicted a final state and was applied through a ``CORRECTION`` move."""
        return self.correction is not None

    @property
    def new_fill(self) -> Fill | None:
        """The fill this event added, if any."""
        if isinstance(self.event, Fill) and not self.duplicate:
            return self.event
        return None


def _quantity_kind(order: Order, executed: Decimal) -> EventKind:
    """FILL, FILL_COMPLETE or FILL_SEEN for an executed quantity moving to ``executed``."""
    if executed <= order.executed_qty or (order.qty is None and order.state is OrderState.FILLED):
        return EventKind.FILL_SEEN
    if order.qty is not None and executed == order.qty:
        return EventKind.FILL_COMPLETE
    return EventKind.FILL


def _status_kind(order: Order, update: OrderUpdate, executed: Decimal) -> EventKind:
    status = update.status
    if status is VenueStatus.NEW:
        return EventKind.ACK
    if status in (VenueStatus.TRIGGERING, VenueStatus.TRIGGERED):
        return EventKind.TRIGGER
    if status is VenueStatus.PARTIALLY_FILLED:
        return _quantity_kind(order, executed)
    if status is VenueStatus.FILLED:
        if order.qty is not None and executed != order.qty:
            raise InconsistentEvent(
                order, EventKind.FILL_COMPLETE, f"FILLED with executed {executed} != qty {order.qty}"
            )
        return EventKind.FILL_COMPLETE
    if status is VenueStatus.FINISHED:  # algo: filled or canceled, the executed quantity tells
        complete = executed > 0 and (order.qty is None or executed == order.qty)
        return EventKind.FILL_COMPLETE if complete else EventKind.CANCEL
    if status is VenueStatus.CANCELED:
        return EventKind.CANCEL
    if status in (VenueStatus.EXPIRED, VenueStatus.EXPIRED_IN_MATCH):
        return EventKind.EXPIRE
    return EventKind.REJECT


def _merge_id(
    order: Order, kind: EventKind, name: str, known: str | None, reported: str | None
) -> str | None:
    if reported is None or reported == known:
        return known
    if known is not None:
        raise InconsistentEvent(order, kind, f"{name} {reported} reported, {known} known")
    return reported


def _target(order: Order, kind: EventKind) -> OrderState:
    target = TRANSITIONS.get((order.state, kind))
    if target is None:
        if (order.state, kind) in CORRECTIONS:
            raise _ContradictsFinalState(order, kind)
        raise IllegalTransition(order, kind)
    return target


def _apply_fill(order: Order, fill: Fill) -> Transition:
    for seen in order.fills:
        if seen.trade_id == fill.trade_id:
            if not seen.same_trade(fill):
                raise InconsistentEvent(order, None, f"trade {fill.trade_id} reported with other qty/price")
            _target(order, EventKind.FILL_SEEN)
            return Transition(order, order, EventKind.FILL_SEEN, fill, duplicate=True)
    fills = (*order.fills, fill)
    fill_sum = order.filled_qty_from_fills + fill.qty
    if order.qty is not None and fill_sum > order.qty:
        raise OverfillError(order, EventKind.FILL, f"fills {fill_sum} > qty {order.qty}")
    executed = max(fill_sum, order.venue_executed_qty)
    kind = _quantity_kind(order, executed)
    state = _target(order, kind)
    new = dataclasses.replace(
        order,
        state=state,
        fills=fills,
        executed_qty=executed,
        avg_price=vwap(fills)[1] if fill_sum >= order.venue_executed_qty else order.avg_price,
        exchange_order_id=_merge_id(
            order, kind, "exchange_order_id", order.exchange_order_id, fill.exchange_order_id
        ),
        not_found_count=0,
        updated_ms=max(order.updated_ms, fill.time_ms),
    )
    return Transition(order, new, kind, fill)


def _apply_update(order: Order, update: OrderUpdate) -> Transition:
    venue_executed = order.venue_executed_qty
    if update.executed_qty is not None:
        venue_executed = max(venue_executed, update.executed_qty)
    if order.qty is not None and venue_executed > order.qty:
        raise OverfillError(order, None, f"venue executed {venue_executed} > qty {order.qty}")
    fill_sum = order.filled_qty_from_fills
    executed = max(fill_sum, venue_executed)
    kind = _status_kind(order, update, executed)
    state = _target(order, kind)
    avg_price = order.avg_price
    if update.avg_price is not None and update.avg_price > 0 and venue_executed >= fill_sum:
        avg_price = update.avg_price
    triggered_ms = order.triggered_ms
    if kind is EventKind.TRIGGER and triggered_ms is None:
        triggered_ms = update.time_ms
    new = dataclasses.replace(
        order,
        state=state,
        executed_qty=executed,
        venue_executed_qty=venue_executed,
        avg_price=avg_price,
        exchange_order_id=_merge_id(
            order, kind, "exchange_order_id", order.exchange_order_id, update.exchange_order_id
        ),
        algo_id=_merge_id(order, kind, "algo_id", order.algo_id, update.algo_id),
        not_found_count=0,
        triggered_ms=triggered_ms,
        updated_ms=max(order.updated_ms, update.time_ms),
    )
    return Transition(order, new, kind, update)


def _apply_local(order: Order, event: LocalEvent) -> Transition:
    kind = event.kind
    if kind is EventKind.LOST and order.not_found_count < 1:
        raise InconsistentEvent(order, kind, "declared lost before any not-found reply")
    state = _target(order, kind)
    count = order.not_found_count + 1 if kind is EventKind.QUERY_NOT_FOUND else order.not_found_count
    new = dataclasses.replace(
        order, state=state, not_found_count=count, updated_ms=max(order.updated_ms, event.time_ms)
    )
    return Transition(order, new, kind, event)


def classify(order: Order, event: Event) -> EventKind:
    """The table kind ``event`` has for ``order`` (raises like :func:`apply` on an invalid event)."""
    return apply(order, event).kind


def apply(order: Order, event: Event) -> Transition:
    """Apply one event to ``order``; return the transition or raise :class:`IllegalTransition`."""
    if event.client_order_id != order.client_order_id:
        raise ValueError(f"event for {event.client_order_id} applied to {order.client_order_id}")
    try:
        return _apply_one(order, event)
    except _ContradictsFinalState as contradiction:
        note = LocalEvent(
            order.client_order_id, EventKind.CORRECTION, event.time_ms, reason=str(contradiction)
        )
        correction = _apply_local(order, note)
        then = _apply_one(correction.order, event)  # UNKNOWN is not final: no second correction
        return dataclasses.replace(then, previous=order, correction=correction)


def _apply_one(order: Order, event: Event) -> Transition:
    if isinstance(event, Fill):
        return _apply_fill(order, event)
    if isinstance(event, OrderUpdate):
        return _apply_update(order, event)
    return _apply_local(order, event)


def replay(order: Order, events: Iterable[Event]) -> Order:
    """``order`` as created, after applying ``events`` in order (each must be legal)."""
    current = order.as_created()
    for event in events:
        current = apply(current, event).order
    return current
