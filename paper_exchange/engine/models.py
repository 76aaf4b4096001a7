"""Domain objects of the engine: accounts, settings, orders, algo orders, trades, positions.

Amounts are ``Decimal``; times are int ms on the replay clock.  Order and algo-order states
are Enums whose only legal moves are listed in one transition table each; an
illegal move raises :class:`IllegalTransition`.  Every object converts to and from a flat
JSON-ready dict (``to_row``/``from_row``) which is what the SQLite store keeps.
"""

from __future__ import annotations

import builtins
import dataclasses
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from typing import Any, ClassVar, Final, TypeVar

ZERO: Final = Decimal(0)
MONEY = Decimal("0.00000001")  # USDT amounts (PnL, fees, funding, margins) are kept to 8 decimals
FUNDING_INTERVAL_MS: Final = 8 * 3_600_000  # funding settles at 00:00, 08:00 and 16:00 UTC

SIDES: Final = frozenset({"BUY", "SELL"})
ORDER_TYPES: Final = frozenset({"LIMIT", "MARKET"})
ALGO_TYPES: Final = frozenset(
    {"STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"}
)
ALL_TYPES: Final = ORDER_TYPES | ALGO_TYPES
TIME_IN_FORCE: Final = frozenset({"GTC", "IOC", "FOK", "GTX", "GTD"})
POSITION_SIDES: Final = frozenset({"BOTH", "LONG", "SHORT"})
WORKING_TYPES: Final = frozenset({"CONTRACT_PRICE", "MARK_PRICE"})
MARGIN_TYPES: Final = frozenset({"ISOLATED", "CROSSED"})


class IllegalTransition(RuntimeError):
    """An order was asked to move to a state its transition table does not allow."""


class OrderStatus(str, Enum):
    """Binance order statuses the engine produces."""

    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    EXPIRED = "EXPIRED"


class AlgoStatus(str, Enum):
    """Binance algo-order statuses the engine produces."""

    NEW = "NEW"
    TRIGGERED = "TRIGGERED"
    FINISHED = "FINISHED"
    CANCELED = "CANCELED"
    EXPIRED = "EXPIRED"
    REJECTED = "REJECTED"


_S = OrderStatus
ORDER_TRANSITIONS: Final[dict[tuple[OrderStatus, str], OrderStatus]] = {
    (_S.NEW, "partial_fill"): _S.PARTIALLY_FILLED,
    (_S.NEW, "fill"): _S.FILLED,
    (_S.NEW, "cancel"): _S.CANCELED,
    (_S.NEW, "expire"): _S.EXPIRED,
    (_S.PARTIALLY_FILLED, "partial_fill"): _S.PARTIALLY_FILLED,
    (_S.PARTIALLY_FILLED, "fill"): _S.FILLED,
    (_S.PARTIALLY_FILLED, "cancel"): _S.CANCELED,
    (_S.PARTIALLY_FILLED, "expire"): _S.EXPIRED,
}
OPEN_STATUSES: Final = frozenset({_S.NEW, _S.PARTIALLY_FILLED})

_A = AlgoStatus
ALGO_TRANSITIONS: Final[dict[tuple[AlgoStatus, str], AlgoStatus]] = {
    (_A.NEW, "trigger"): _A.TRIGGERED,
    (_A.NEW, "cancel"): _A.CANCELED,
    (_A.NEW, "expire"): _A.EXPIRED,
    (_A.NEW, "reject"): _A.REJECTED,
    (_A.TRIGGERED, "finish"): _A.FINISHED,
    (_A.TRIGGERED, "expire"): _A.EXPIRED,
}

T = TypeVar("T")


class Row:
    """Flat dict conversion for the slot dataclasses below (Decimal <-> str, Enum <-> value)."""

    __slots__ = ()
    _decimals: ClassVar[frozenset[str]] = frozenset()
    _enums: ClassVar[dict[str, type[Enum]]] = {}

    def to_row(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, Decimal):
                value = str(value)
            elif isinstance(value, Enum):
                value = value.value
            out[f.name] = value
        return out

    @classmethod
    def from_row(cls: type[T], row: dict[str, Any]) -> T:
        values = dict(row)
        for name in cls._decimals:  # type: ignore[attr-defined]
            if values.get(name) is not None:
                values[name] = Decimal(values[name])
        for name, enum in cls._enums.items():  # type: ignore[attr-defined]
            values[name] = enum(values[name])
        return cls(**values)


@dataclass(slots=True)
class Account(Row):
    """One API key's USDT account.  ``wallet`` = deposit + realised PnL - fees + funding."""

    key: str
    wallet: Decimal
    deposit: Decimal
    dual_side: bool = False
    realized_pnl: Decimal = ZERO
    fees: Decimal = ZERO
    funding: Decimal = ZERO
    update_time: int = 0

    _decimals: ClassVar[frozenset[str]] = frozenset({"wallet", "deposit", "realized_pnl", "fees", "funding"})


@dataclass(slots=True)
class SymbolSettings(Row):
    """Per account and symbol: leverage and margin type."""

    account: str
    symbol: str
    leverage: int
    margin_type: str = "CROSSED"


@dataclass(slots=True)
class Position(Row):
    """A position leg (``BOTH`` in one-way mode, ``LONG``/``SHORT`` in hedge mode); amount is signed."""

    account: str
    symbol: str
    position_side: str
    amount: Decimal = ZERO
    entry_price: Decimal = ZERO
    isolated_wallet: Decimal = ZERO
    realized: Decimal = ZERO
    update_time: int = 0

    _decimals: ClassVar[frozenset[str]] = frozenset({"amount", "entry_price", "isolated_wallet", "realized"})


@dataclass(slots=True)
class Order(Row):
    """A LIMIT, MARKET or LIQUIDATION order as the matching engine keeps it."""

    order_id: int
    account: str
    symbol: str
    client_order_id: str
    side: str
    position_side: str
    type: str
    orig_type: str
    time_in_force: str
    price: Decimal
    orig_qty: Decimal
    reduce_only: bool
    time: int
    update_time: int
    status: OrderStatus = OrderStatus.NEW
    executed_qty: Decimal = ZERO
    cum_quote: Decimal = ZERO
    stop_price: Decimal = ZERO
    close_position: bool = False
    working_type: str = "CONTRACT_PRICE"
    price_protect: bool = False

    _decimals: ClassVar[frozenset[str]] = frozenset(
        {"price", "orig_qty", "executed_qty", "cum_quote", "stop_price"}
    )
    _enums: ClassVar[dict[str, builtins.type[Enum]]] = {"status": OrderStatus}

    @property
    def remaining(self) -> Decimal:
        return self.orig_qty - self.executed_qty

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    def avg_price(self) -> Decimal:
        return self.cum_quote / self.executed_qty if self.executed_qty else ZERO

    def apply(self, event: str) -> None:
        """Move to the next status through :data:`ORDER_TRANSITIONS`."""
        nxt = ORDER_TRANSITIONS.get((self.status, event))
        if nxt is None:
            raise IllegalTransition(f"order {self.order_id}: {event} not allowed from {self.status.value}")
        self.status = nxt


@dataclass(slots=True)
class AlgoOrder(Row):
    """A conditional order (algoOrder endpoint); on trigger it places an actual order."""

    algo_id: int
    account: str
    client_algo_id: str
    order_type: str
    symbol: str
    side: str
    position_side: str
    time_in_force: str
    quantity: Decimal
    trigger_price: Decimal
    price: Decimal
    working_type: str
    close_position: bool
    reduce_only: bool
    create_time: int
    update_time: int
    status: AlgoStatus = AlgoStatus.NEW
    price_protect: bool = False
    activate_price: Decimal | None = None
    callback_rate: Decimal | None = None
    activated: bool = False
    extreme: Decimal = ZERO
    trigger_time: int = 0
    actual_order_id: int | None = None
    actual_price: Decimal = ZERO
    actual_qty: Decimal = ZERO
    reject_reason: str = ""

    _decimals: ClassVar[frozenset[str]] = frozenset(
        {
            "quantity",
            "trigger_price",
            "price",
            "activate_price",
            "callback_rate",
            "extreme",
            "actual_price",
            "actual_qty",
        }
    )
    _enums: ClassVar[dict[str, type[Enum]]] = {"status": AlgoStatus}

    @property
    def actual_type(self) -> str:
        return "LIMIT" if self.order_type in ("STOP", "TAKE_PROFIT") else "MARKET"

    def apply(self, event: str) -> None:
        """Move to the next status through :data:`ALGO_TRANSITIONS`."""
        nxt = ALGO_TRANSITIONS.get((self.status, event))
        if nxt is None:
            raise IllegalTransition(f"algo {self.algo_id}: {event} not allowed from {self.status.value}")
        self.status = nxt


@dataclass(slots=True)
class Trade(Row):
    """One fill of one order."""

    trade_id: int
    account: str
    symbol: str
    order_id: int
    side: str
    position_side: str
    price: Decimal
    qty: Decimal
    quote_qty: Decimal
    commission: Decimal
    realized_pnl: Decimal
    maker: bool
    time: int

    _decimals: ClassVar[frozenset[str]] = frozenset(
        {"price", "qty", "quote_qty", "commission", "realized_pnl"}
    )


@dataclass(slots=True)
class Income(Row):
    """One entry of the account's income history (``GET /fapi/v1/income``).

    ``income_type`` is Binance's: ``FUNDING_FEE`` (one per position per funding time),
    ``COMMISSION`` and ``REALIZED_PNL`` (one each per fill, when not zero).  ``income`` is signed
    as the wallet sees it (a fee or funding paid is negative).  ``trade_id`` is 0 when the entry
    does not come from a fill.
    """

    tran_id: int
    account: str
    symbol: str
    income_type: str
    income: Decimal
    time: int
    trade_id: int = 0
    asset: str = "USDT"

    _decimals: ClassVar[frozenset[str]] = frozenset({"income"})


@dataclass
class Changes:
    """What one engine operation changed; the store writes it in one transaction."""

    accounts: dict[str, Account] = field(default_factory=dict)
    settings: dict[tuple[str, str], SymbolSettings] = field(default_factory=dict)
    positions: dict[tuple[str, str, str], Position] = field(default_factory=dict)
    orders: dict[int, Order] = field(default_factory=dict)
    algos: dict[int, AlgoOrder] = field(default_factory=dict)
    trades: list[Trade] = field(default_factory=list)
    incomes: list[Income] = field(default_factory=list)
    clock_ms: int | None = None

    def __bool__(self) -> bool:
        return bool(
            self.accounts
            or self.settings
            or self.positions
            or self.orders
            or self.algos
            or self.trades
            or self.incomes
            or self.clock_ms is not None
        )
