"""Row mapping for :mod:`coordinator.orders.store`: SQLite rows to domain objects and back.

Amounts are stored as TEXT (``str(Decimal)``, exact) and read back with ``Decimal``.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from decimal import Decimal

from coordinator.orders.events import Event, Fill
from coordinator.orders.models import Intent, IntentStatus, Order, OrderKind, OrderType
from coordinator.orders.states import EventKind, OrderState
from coordinator.side import Side


def dec_text(value: Decimal | None) -> str | None:
    """A Decimal as stored TEXT (exact), ``None`` kept."""
    return None if value is None else str(value)


def text_dec(value: str | None) -> Decimal | None:
    """Stored TEXT back to a Decimal, ``None`` kept."""
    return None if value is None else Decimal(value)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One ``order_events`` row."""

    seq: int
    client_order_id: str
    kind: EventKind | None
    event: Event
    raw: str | None
    state_before: OrderState
    state_after: OrderState
    applied: bool
    duplicate: bool
    error: str | None
    recorded_ms: int


@dataclass(frozen=True, slots=True)
class Bracket:
    """An open intent with exposure: its entry and the latest order of each other leg."""

    intent: Intent
    entry: Order
    stop_loss: Order | None
    take_profit: Order | None
    close: Order | None


def intent_from_row(row: sqlite3.Row) -> Intent:
    return Intent(
        intent_id=row["intent_id"],
        symbol=row["symbol"],
        side=Side(row["side"]),
        qty=Decimal(row["qty"]),
        created_ms=row["created_ms"],
        stop_price=text_dec(row["stop_price"]),
        take_profit_price=text_dec(row["take_profit_price"]),
        status=IntentStatus(row["status"]),
    )


def fill_from_row(row: sqlite3.Row) -> Fill:
    return Fill(
        client_order_id=row["client_order_id"],
        trade_id=row["trade_id"],
        qty=Decimal(row["qty"]),
        price=Decimal(row["price"]),
        time_ms=row["time_ms"],
        source=row["source"],
        commission=Decimal(row["commission"]),
        commission_asset=row["commission_asset"],
        realized_pnl=Decimal(row["realized_pnl"]),
        maker=bool(row["maker"]),
        exchange_order_id=row["exchange_order_id"],
    )


def order_from_row(row: sqlite3.Row, fills: tuple[Fill, ...]) -> Order:
    return Order(
        client_order_id=row["client_order_id"],
        intent_id=row["intent_id"],
        kind=OrderKind(row["kind"]),
        attempt=row["attempt"],
        symbol=row["symbol"],
        side=Side(row["side"]),
        type=OrderType(row["type"]),
        qty=text_dec(row["qty"]),
        created_ms=row["created_ms"],
        price=text_dec(row["price"]),
        trigger_price=text_dec(row["trigger_price"]),
        reduce_only=bool(row["reduce_only"]),
        close_position=bool(row["close_position"]),
        parent_id=row["parent_id"],
        state=OrderState(row["state"]),
        exchange_order_id=row["exchange_order_id"],
        algo_id=row["algo_id"],
        executed_qty=Decimal(row["executed_qty"]),
        venue_executed_qty=Decimal(row["venue_executed_qty"]),
        avg_price=text_dec(row["avg_price"]),
        fills=fills,
        not_found_count=row["not_found_count"],
        triggered_ms=row["triggered_ms"],
        updated_ms=row["updated_ms"],
    )
