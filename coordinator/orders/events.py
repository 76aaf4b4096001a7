"""The frozen events that are the ONLY way an order changes.

- :class:`OrderUpdate`: a venue status report for one order (POST/GET/DELETE reply, query, or the
  user stream's ``ORDER_TRADE_UPDATE``/``ALGO_UPDATE``), with the venue's cumulative executed
  quantity.  An error reply refusing a new order is an ``OrderUpdate`` with status ``REJECTED``.
- :class:`Fill`: one trade of one order, identified by its venue ``trade_id`` (deduplicated).
- :class:`LocalEvent`: what we observed ourselves: about to send, refused before sending, no reply,
  "order does not exist", declared lost.

Amounts are ``Decimal`` (never float), times int64 ms UTC.  :func:`event_to_json` /
:func:`event_from_json` round-trip an event exactly; ``order_events`` stores that JSON, so the
stored history replays to the same order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from typing import Any, Final, Literal, TypeAlias

from coordinator.orders.states import LOCAL_KINDS, EventKind

Source = Literal["rest", "stream", "local"]
SOURCES: Final = ("rest", "stream", "local")


class VenueStatus(str, Enum):
    """Order statuses (``X``) and algo statuses (``algoStatus``) as Binance spells them."""

    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    EXPIRED_IN_MATCH = "EXPIRED_IN_MATCH"
    TRIGGERING = "TRIGGERING"  # algo only
    TRIGGERED = "TRIGGERED"  # algo only
    FINISHED = "FINISHED"  # algo only: the triggered order filled or was canceled (see executed qty)


def _check_decimal(name: str, value: object, *, positive: bool = False, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, Decimal) or not value.is_finite():
        raise TypeError(f"{name} must be a finite Decimal, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be {'> 0' if positive else '>= 0'}, got {value}")


def _check_common(client_order_id: str, time_ms: int, source: str) -> None:
    if not client_order_id:
        raise ValueError("client_order_id is empty")
    if not isinstance(time_ms, int) or isinstance(time_ms, bool) or time_ms < 0:
        raise ValueError(f"time_ms must be an int >= 0, got {time_ms!r}")
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """A venue status report; ``executed_qty`` is cumulative (Binance ``executedQty``/``z``)."""

    client_order_id: str
    status: VenueStatus
    time_ms: int
    source: Source
    exchange_order_id: str | None = None  # orderId (for an algo order: the triggered order's id)
    algo_id: str | None = None
    executed_qty: Decimal | None = None
    avg_price: Decimal | None = None
    reason: str = ""  # error code and message of a rejection, algo reject reason

    def __post_init__(self) -> None:
        _check_common(self.client_order_id, self.time_ms, self.source)
        if not isinstance(self.status, VenueStatus):
            raise TypeError(f"status must be a VenueStatus, got {self.status!r}")
        _check_decimal("executed_qty", self.executed_qty, optional=True)
        _check_decimal("avg_price", self.avg_price, optional=True)
        if self.executed_qty is None and self.status in (VenueStatus.PARTIALLY_FILLED, VenueStatus.FILLED):
            raise ValueError(f"a {self.status.value} update needs executed_qty")


@dataclass(frozen=True, slots=True)
class Fill:
    """One trade of one order; ``trade_id`` is the venue's trade id (unique per symbol)."""

    client_order_id: str
    trade_id: int
    qty: Decimal
    price: Decimal
    time_ms: int
    source: Source
    commission: Decimal = Decimal(0)
    commission_asset: str = ""
    realized_pnl: Decimal = Decimal(0)
    maker: bool = False
    exchange_order_id: str | None = None

    def __post_init__(self) -> None:
        _check_common(self.client_order_id, self.time_ms, self.source)
        if not isinstance(self.trade_id, int) or isinstance(self.trade_id, bool):
            raise TypeError(f"trade_id must be an int, got {self.trade_id!r}")
        _check_decimal("qty", self.qty, positive=True)
        _check_decimal("price", self.price, positive=True)
        _check_decimal("commission", self.commission)
        if not isinstance(self.realized_pnl, Decimal) or not self.realized_pnl.is_finite():
            raise TypeError(f"realized_pnl must be a finite Decimal, got {self.realized_pnl!r}")

    def same_trade(self, other: Fill) -> bool:
        """Whether ``other`` reports the same execution (same id, quantity and price)."""
        return (self.trade_id, self.qty, self.price) == (other.trade_id, other.qty, other.price)


@dataclass(frozen=True, slots=True)
class LocalEvent:
    """Our own observation about an order; ``kind`` is one of :data:`LOCAL_KINDS`."""

    client_order_id: str
    kind: EventKind
    time_ms: int
    source: Source = "local"
    reason: str = ""

    def __post_init__(self) -> None:
        _check_common(self.client_order_id, self.time_ms, self.source)
        if self.kind not in LOCAL_KINDS:
            raise ValueError(f"{self.kind!r} is not a local event kind")


Event: TypeAlias = OrderUpdate | Fill | LocalEvent
EVENT_TYPES: Final[dict[str, type[OrderUpdate] | type[Fill] | type[LocalEvent]]] = {
    "update": OrderUpdate,
    "fill": Fill,
    "local": LocalEvent,
}


def event_type(event: Event) -> str:
    """The event's type tag: ``update``, ``fill`` or ``local``."""
    if isinstance(event, OrderUpdate):
        return "update"
    if isinstance(event, Fill):
        return "fill"
    return "local"


def _to_json_value(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    return value


def event_to_json(event: Event) -> str:
    """The event as compact JSON with a ``type`` tag; Decimals as strings."""
    fields: dict[str, object] = {"type": event_type(event)}
    for name in event.__dataclass_fields__:
        fields[name] = _to_json_value(getattr(event, name))
    return json.dumps(fields, separators=(",", ":"), sort_keys=True)


_DECIMAL_FIELDS: Final = frozenset(
    {"executed_qty", "avg_price", "qty", "price", "commission", "realized_pnl"}
)


def event_from_json(text: str) -> Event:
    """Rebuild the event written by :func:`event_to_json` (equal to the original)."""
    data: dict[str, Any] = json.loads(text)
    cls = EVENT_TYPES[data.pop("type")]
    for name in _DECIMAL_FIELDS & data.keys():
        if data[name] is not None:
            data[name] = Decimal(data[name])
    if cls is OrderUpdate:
        data["status"] = VenueStatus(data["status"])
    elif cls is LocalEvent:
        data["kind"] = EventKind(data["kind"])
    return cls(**data)
