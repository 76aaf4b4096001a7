"""Domain objects: :class:`Intent` (what the coordinator wants) and :class:`Order` (one request).

Both are frozen: an order changes only by :func:`coordinator.orders.machine.apply` returning a new
one.  Fields we own (ids, intent, leg, attempt, what we asked for) are set at creation; fields that
copy the venue (``exchange_order_id``, ``algo_id``, ``state``, quantities, fills) follow events.
Amounts are ``Decimal``; times int64 ms UTC.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from typing import Final

from coordinator.orders.events import Fill
from coordinator.orders.states import OrderState, is_final
from coordinator.side import Side


class OrderType(str, Enum):
    """Binance order types; the conditional ones go to ``/fapi/v1/algoOrder``."""

    MARKET = "MARKET"
    LIMIT = "LIMIT"
    STOP = "STOP"
    STOP_MARKET = "STOP_MARKET"
    TAKE_PROFIT = "TAKE_PROFIT"
    TAKE_PROFIT_MARKET = "TAKE_PROFIT_MARKET"
    TRAILING_STOP_MARKET = "TRAILING_STOP_MARKET"


ALGO_TYPES: Final = frozenset(
    {
        OrderType.STOP,
        OrderType.STOP_MARKET,
        OrderType.TAKE_PROFIT,
        OrderType.TAKE_PROFIT_MARKET,
        OrderType.TRAILING_STOP_MARKET,
    }
)


class OrderKind(str, Enum):
    """The leg of an intent an order serves."""

    ENTRY = "entry"
    STOP_LOSS = "stop_loss"
    TAKE_PROFIT = "take_profit"
    CLOSE = "close"


class IntentStatus(str, Enum):
    OPEN = "OPEN"  # wants or holds a position
    CLOSED = "CLOSED"  # position closed, or the entry ended without a fill
    CANCELED = "CANCELED"  # given up before any exposure


@dataclass(frozen=True, slots=True)
class Intent:
    """A decision to hold a position: side, size and its protective prices."""

    intent_id: str
    symbol: str
    side: Side
    qty: Decimal
    created_ms: int
    stop_price: Decimal | None = None
    take_profit_price: Decimal | None = None
    status: IntentStatus = IntentStatus.OPEN


@dataclass(frozen=True, slots=True)
class Order:
    """One order as we know it; ``qty`` is ``None`` only for ``close_position`` orders."""

    client_order_id: str
    intent_id: str
    kind: OrderKind
    attempt: int
    symbol: str
    side: Side
    type: OrderType
    qty: Decimal | None
    created_ms: int
    price: Decimal | None = None
    trigger_price: Decimal | None = None
    reduce_only: bool = False
    close_position: bool = False
    parent_id: str | None = None  # the entry order a stop/take-profit protects
    # --- copies of the venue, changed only by events
    state: OrderState = OrderState.PENDING
    exchange_order_id: str | None = None
    algo_id: str | None = None
    executed_qty: Decimal = Decimal(0)  # max(sum of fills, venue cumulative)
    venue_executed_qty: Decimal = Decimal(0)  # highest cumulative quantity the venue reported
    avg_price: Decimal | None = None
    fills: tuple[Fill, ...] = field(default=())
    not_found_count: int = 0  # consecutive "does not exist" replies
    triggered_ms: int | None = None  # when an algo order was reported TRIGGERING/TRIGGERED
    updated_ms: int = 0

    def __post_init__(self) -> None:
        if self.qty is None and not self.close_position:
            raise ValueError("qty is required unless close_position")
        if self.qty is not None and self.qty <= 0:
            raise ValueError(f"qty must be > 0, got {self.qty}")
        if self.attempt < 1:
            raise ValueError("attempt starts at 1")

    @property
    def is_algo(self) -> bool:
        """Whether the order goes to the algo (conditional) endpoint."""
        return self.type in ALGO_TYPES

    @property
    def is_final(self) -> bool:
        return is_final(self.state)

    @property
    def remaining_qty(self) -> Decimal | None:
        """Quantity not yet executed (``None`` when the order quantity is unknown)."""
        return None if self.qty is None else self.qty - self.executed_qty

    @property
    def filled_qty_from_fills(self) -> Decimal:
        return sum((f.qty for f in self.fills), Decimal(0))

    @property
    def trade_ids(self) -> frozenset[int]:
        return frozenset(f.trade_id for f in self.fills)

    def as_created(self) -> Order:
        """This order as :meth:`OrderStore.create_order` wrote it, before any event."""
        return dataclasses.replace(
            self,
            state=OrderState.PENDING,
            exchange_order_id=None,
            algo_id=None,
            executed_qty=Decimal(0),
            venue_executed_qty=Decimal(0),
            avg_price=None,
            fills=(),
            not_found_count=0,
            triggered_ms=None,
            updated_ms=self.created_ms,
        )
