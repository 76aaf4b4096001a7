"""Order bookkeeping: states and THE transition table, frozen events, the pure ``apply``, the
tracker, deterministic client ids and the SQLite store (persist first, act after).

Synchronous and free of I/O except :class:`OrderStore`; the order manager (placing, monitoring,
reconciling) is built on top.
"""

from coordinator.orders.events import (
    Event,
    Fill,
    LocalEvent,
    OrderUpdate,
    VenueStatus,
    event_from_json,
    event_to_json,
)
from coordinator.orders.ids import client_order_id, is_ours, new_intent_id, parse_client_order_id
from coordinator.orders.machine import (
    IllegalTransition,
    InconsistentEvent,
    OverfillError,
    Transition,
    apply,
    classify,
    replay,
)
from coordinator.orders.models import Intent, IntentStatus, Order, OrderKind, OrderType
from coordinator.orders.states import FINAL_STATES, TRANSITIONS, EventKind, OrderState, is_final
from coordinator.orders.store import LiveOrderExists, OrderStore, UnknownOrder
from coordinator.orders.store_rows import Bracket, StoredEvent
from coordinator.orders.tracker import OrderTracker
from coordinator.side import Side

__all__ = [
    "FINAL_STATES",
    "TRANSITIONS",
    "Bracket",
    "Event",
    "EventKind",
    "Fill",
    "IllegalTransition",
    "InconsistentEvent",
    "Intent",
    "IntentStatus",
    "LiveOrderExists",
    "LocalEvent",
    "Order",
    "OrderKind",
    "OrderState",
    "OrderStore",
    "OrderTracker",
    "OrderType",
    "OrderUpdate",
    "OverfillError",
    "Side",
    "StoredEvent",
    "Transition",
    "UnknownOrder",
    "VenueStatus",
    "apply",
    "classify",
    "client_order_id",
    "event_from_json",
    "event_to_json",
    "is_final",
    "is_ours",
    "new_intent_id",
    "parse_client_order_id",
    "replay",
]
