"""Order states, event kinds and THE transition table: the only moves an order can make.

``TRANSITIONS`` maps ``(state, event kind) -> next state``.  A pair that is not a key is an illegal
move: :func:`coordinator.orders.machine.apply` raises
:class:`~coordinator.orders.machine.IllegalTransition` for it.  The happy path::

    PENDING ─send─► SUBMITTED ─ack─► NEW ─► PARTIALLY_FILLED ─► FILLED
       │                │              └─► CANCELED | EXPIRED | REJECTED
       │                └─timeout/5xx─► UNKNOWN ─query─► (the state found) | NOT_FOUND
       └─ rejected before sending (risk, filters) ─► REJECTED

Rows marked ``# real-world possibility`` exist because venues misbehave or messages race (a fill
reported after the cancel, a lost acknowledgement, a stale report arriving late); they are legal,
and :class:`~coordinator.orders.machine.Transition` flags them (``late``/``reopened``) so the
order manager can look closer.

**Corrections.**  A venue report that contradicts a final state we recorded -- a fill or an
acknowledgement for an order recorded ``REJECTED``, a fill for one recorded ``CANCELED`` or
``EXPIRED`` (the cancel was acknowledged, but the order had already matched) -- is not refused:
the venue's truth wins.  The pairs in :data:`CORRECTIONS` are not rows of their own; the machine
first applies the explicit ``CORRECTION`` move (``final -> UNKNOWN``: our final state is withdrawn,
the order may exist), then the report itself from ``UNKNOWN``.  Both are persisted as
``order_events`` rows (the ``CORRECTION`` one is a local event whose reason names the report), and
the manager reopens the order's intent so a position the correction reveals gets its bracket.

``PENDING`` means *never sent*: the manager persists ``SEND`` before the request leaves, so a
``PENDING`` order found at restart is safe to abandon (``REJECT_LOCAL``).  ``UNKNOWN`` means *may
exist on the venue*; it stays ``UNKNOWN`` while not-found replies accumulate (each one counted on
the order) until the tracker declares it ``LOST``, which moves it to ``NOT_FOUND``, a final state.
A query that finds the order is simply the venue status it reports (an ``OrderUpdate`` from REST),
so "query found state X" is the row ``(UNKNOWN, kind of X)``.
"""

from __future__ import annotations

from enum import Enum
from typing import Final


class OrderState(str, Enum):
    """Where an order is in its life, as far as we know."""

    PENDING = "PENDING"  # written to SQLite, not sent yet (guaranteed: SEND is persisted first)
    SUBMITTED = "SUBMITTED"  # the request may have left; no reply yet
    NEW = "NEW"  # acknowledged by the venue, resting (or, for algo orders, waiting to trigger)
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    EXPIRED = "EXPIRED"
    REJECTED = "REJECTED"  # by us before sending, or by the venue
    UNKNOWN = "UNKNOWN"  # the outcome of a request is unknown: the order may exist
    NOT_FOUND = "NOT_FOUND"  # declared lost after repeated not-found replies


FINAL_STATES: Final = frozenset(
    {
        OrderState.FILLED,
        OrderState.CANCELED,
        OrderState.EXPIRED,
        OrderState.REJECTED,
        OrderState.NOT_FOUND,
    }
)
"""States needing no further watching; an intent may get a new order for a leg only after these."""


class EventKind(str, Enum):
    """What an event means for the table; :func:`~coordinator.orders.machine.classify` derives it."""

    SEND = "SEND"  # we are about to send the request (persisted before it leaves)
    REJECT_LOCAL = "REJECT_LOCAL"  # refused before sending: risk, filters, abandoned at restart
    ACK = "ACK"  # venue status NEW (reply, stream or query)
    TRIGGER = "TRIGGER"  # algo status TRIGGERING/TRIGGERED: the conditional order fired
    REJECT = "REJECT"  # venue refused the order (error reply, status REJECTED)
    UNKNOWN_OUTCOME = "UNKNOWN_OUTCOME"  # timeout, connection lost, 503 "Unknown error"
    FILL = "FILL"  # executed quantity grew and is still below the order quantity
    FILL_COMPLETE = "FILL_COMPLETE"  # executed quantity reached the order quantity (or status FILLED)
    FILL_SEEN = "FILL_SEEN"  # fill or status whose quantity is already counted (no growth)
    CANCEL = "CANCEL"  # venue status CANCELED (or algo FINISHED without a complete fill)
    EXPIRE = "EXPIRE"  # venue status EXPIRED / EXPIRED_IN_MATCH
    QUERY_NOT_FOUND = "QUERY_NOT_FOUND"  # query by clientOrderId answered "does not exist" (-2013)
    LOST = "LOST"  # the tracker gave up after N not-found replies
    CORRECTION = "CORRECTION"  # the venue contradicted a final state we recorded: withdraw it


LOCAL_KINDS: Final = frozenset(
    {
        EventKind.SEND,
        EventKind.REJECT_LOCAL,
        EventKind.UNKNOWN_OUTCOME,
        EventKind.QUERY_NOT_FOUND,
        EventKind.LOST,
        EventKind.CORRECTION,
    }
)
"""Kinds carried by a :class:`~coordinator.orders.events.LocalEvent` (our own observations)."""

_S = OrderState
_K = EventKind

TRANSITIONS: Final[dict[tuple[OrderState, EventKind], OrderState]] = {
    # --- before sending
    (_S.PENDING, _K.SEND): _S.SUBMITTED,
    (_S.PENDING, _K.REJECT_LOCAL): _S.REJECTED,
    # --- sent, no reply yet
    (_S.SUBMITTED, _K.ACK): _S.NEW,
    (_S.SUBMITTED, _K.REJECT): _S.REJECTED,
    (_S.SUBMITTED, _K.UNKNOWN_OUTCOME): _S.UNKNOWN,
    (_S.SUBMITTED, _K.FILL): _S.PARTIALLY_FILLED,  # real-world possibility: the ack was lost or is late
    (_S.SUBMITTED, _K.FILL_COMPLETE): _S.FILLED,  # MARKET with RESULT reply, or fill before the ack
    (_S.SUBMITTED, _K.CANCEL): _S.CANCELED,  # real-world possibility: the ack was lost
    (_S.SUBMITTED, _K.EXPIRE): _S.EXPIRED,  # IOC/FOK reply, EXPIRED_IN_MATCH
    (_S.SUBMITTED, _K.TRIGGER): _S.NEW,  # real-world possibility: algo ack lost, trigger seen first
    (_S.SUBMITTED, _K.QUERY_NOT_FOUND): _S.UNKNOWN,  # queried at restart: may still be in flight
    # --- outcome unknown: the query decides
    (_S.UNKNOWN, _K.ACK): _S.NEW,
    (_S.UNKNOWN, _K.TRIGGER): _S.NEW,
    (_S.UNKNOWN, _K.FILL): _S.PARTIALLY_FILLED,
    (_S.UNKNOWN, _K.FILL_COMPLETE): _S.FILLED,
    (_S.UNKNOWN, _K.FILL_SEEN): _S.UNKNOWN,  # trade detail of an order the venue has since forgotten
    (_S.UNKNOWN, _K.CANCEL): _S.CANCELED,
    (_S.UNKNOWN, _K.EXPIRE): _S.EXPIRED,
    (_S.UNKNOWN, _K.REJECT): _S.REJECTED,
    (_S.UNKNOWN, _K.QUERY_NOT_FOUND): _S.UNKNOWN,  # counted; LOST after N
    (_S.UNKNOWN, _K.UNKNOWN_OUTCOME): _S.UNKNOWN,  # another request about it timed out
    (_S.UNKNOWN, _K.LOST): _S.NOT_FOUND,
    # --- resting on the venue
    (_S.NEW, _K.ACK): _S.NEW,  # duplicate report: reply and stream both say NEW
    (_S.NEW, _K.TRIGGER): _S.NEW,  # algo order fired; its market order is on the way
    (_S.NEW, _K.FILL): _S.PARTIALLY_FILLED,
    (_S.NEW, _K.FILL_COMPLETE): _S.FILLED,
    (_S.NEW, _K.CANCEL): _S.CANCELED,
    (_S.NEW, _K.EXPIRE): _S.EXPIRED,
    (_S.NEW, _K.REJECT): _S.REJECTED,  # algo orders: margin is checked only at trigger time
    (
        _S.NEW,
        _K.QUERY_NOT_FOUND,
    ): _S.UNKNOWN,  # real-world possibility: venue purged it (-2013 after 3/90 days)
    (_S.NEW, _K.UNKNOWN_OUTCOME): _S.NEW,  # a cancel request timed out: the order is still as it was
    (_S.PARTIALLY_FILLED, _K.ACK): _S.PARTIALLY_FILLED,  # out of order: a late NEW report
    (_S.PARTIALLY_FILLED, _K.TRIGGER): _S.PARTIALLY_FILLED,  # out of order: a late trigger report
    (_S.PARTIALLY_FILLED, _K.FILL): _S.PARTIALLY_FILLED,
    (_S.PARTIALLY_FILLED, _K.FILL_SEEN): _S.PARTIALLY_FILLED,  # out of order: stale or already counted
    (_S.PARTIALLY_FILLED, _K.FILL_COMPLETE): _S.FILLED,
    (_S.PARTIALLY_FILLED, _K.CANCEL): _S.CANCELED,
    (_S.PARTIALLY_FILLED, _K.EXPIRE): _S.EXPIRED,
    (_S.PARTIALLY_FILLED, _K.QUERY_NOT_FOUND): _S.UNKNOWN,  # real-world possibility: purged after 90 days
    (_S.PARTIALLY_FILLED, _K.UNKNOWN_OUTCOME): _S.PARTIALLY_FILLED,  # a cancel request timed out
    # --- final states: late and duplicate reports
    (_S.FILLED, _K.ACK): _S.FILLED,  # out of order: a late NEW report
    (_S.FILLED, _K.TRIGGER): _S.FILLED,  # out of order: a late trigger report
    (_S.FILLED, _K.FILL_SEEN): _S.FILLED,  # trade details after the FILLED status
    (_S.FILLED, _K.FILL_COMPLETE): _S.FILLED,  # duplicate FILLED report (reply, stream, query)
    (_S.CANCELED, _K.ACK): _S.CANCELED,  # out of order: a late NEW report
    (_S.CANCELED, _K.TRIGGER): _S.CANCELED,  # out of order
    (_S.CANCELED, _K.CANCEL): _S.CANCELED,  # duplicate report (cancel reply and stream)
    (_S.CANCELED, _K.FILL_SEEN): _S.CANCELED,  # a fill the CANCELED report already counted
    (_S.CANCELED, _K.CORRECTION): _S.UNKNOWN,  # real-world possibility: fill after cancel
    (_S.EXPIRED, _K.ACK): _S.EXPIRED,  # out of order
    (_S.EXPIRED, _K.TRIGGER): _S.EXPIRED,  # out of order
    (_S.EXPIRED, _K.EXPIRE): _S.EXPIRED,  # duplicate report
    (_S.EXPIRED, _K.FILL_SEEN): _S.EXPIRED,  # a fill the EXPIRED report already counted
    (_S.EXPIRED, _K.CORRECTION): _S.UNKNOWN,  # real-world possibility: fill after expiry
    (_S.REJECTED, _K.REJECT): _S.REJECTED,  # duplicate report
    (_S.REJECTED, _K.CORRECTION): _S.UNKNOWN,  # real-world possibility: "rejected" order exists
    (_S.NOT_FOUND, _K.QUERY_NOT_FOUND): _S.NOT_FOUND,  # still not there
    (_S.NOT_FOUND, _K.ACK): _S.NEW,  # real-world possibility: a lost order shows up after all
    (_S.NOT_FOUND, _K.TRIGGER): _S.NEW,  # real-world possibility
    (_S.NOT_FOUND, _K.FILL): _S.PARTIALLY_FILLED,  # real-world possibility
    (_S.NOT_FOUND, _K.FILL_SEEN): _S.NOT_FOUND,  # detail of quantity already counted
    (_S.NOT_FOUND, _K.FILL_COMPLETE): _S.FILLED,  # real-world possibility
    (_S.NOT_FOUND, _K.CANCEL): _S.CANCELED,  # real-world possibility: found, already canceled
    (_S.NOT_FOUND, _K.EXPIRE): _S.EXPIRED,  # real-world possibility
    (_S.NOT_FOUND, _K.REJECT): _S.REJECTED,  # real-world possibility
}


CORRECTIONS: Final[frozenset[tuple[OrderState, EventKind]]] = frozenset(
    {
        (_S.REJECTED, _K.ACK),
        (_S.REJECTED, _K.TRIGGER),
        (_S.REJECTED, _K.FILL),
        (_S.REJECTED, _K.FILL_COMPLETE),
        (_S.REJECTED, _K.CANCEL),
        (_S.REJECTED, _K.EXPIRE),
        (_S.CANCELED, _K.FILL),
        (_S.CANCELED, _K.FILL_COMPLETE),
        (_S.EXPIRED, _K.FILL),
        (_S.EXPIRED, _K.FILL_COMPLETE),
    }
)
"""Reports that contradict a final state: applied through ``(state, CORRECTION) -> UNKNOWN`` first.

A late ``NEW`` report for a ``CANCELED`` order is not here: the stream's ``NEW`` often arrives after
the cancel reply, so it stays a late duplicate ``(CANCELED, ACK) -> CANCELED``.
"""


def is_final(state: OrderState) -> bool:
    """Whether ``state`` needs no further watching (see :data:`FINAL_STATES`)."""
    return state in FINAL_STATES


def reachable_states(start: OrderState = OrderState.PENDING) -> frozenset[OrderState]:
    """Every state the table can reach from ``start`` (``start`` included)."""
    seen = {start}
    frontier = [start]
    while frontier:
        state = frontier.pop()
        for (source, _kind), target in TRANSITIONS.items():
            if source is state and target not in seen:
                seen.add(target)
                frontier.append(target)
    return frozenset(seen)
