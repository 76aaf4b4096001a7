"""Closed intents as round trips: :func:`trade_of` turns an intent's orders into one ``trades`` row.

Entry and exit prices are the VWAP of the entry's and the exit legs' fills; fees are the USDT
commissions of every fill; funding (paid positive, received negative) is set by the caller, who
reads it from the exchange's income history (``FUNDING_FEE`` entries between the entry and the exit,
:meth:`coordinator.exchange.facade.FuturesExchange.funding_paid`) when :func:`funding_possible`.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from coordinator.orders.brackets import EXIT_KINDS
from coordinator.orders.events import Fill
from coordinator.orders.models import Intent, Order, OrderKind
from coordinator.orders.models import Side as OrderSide
from coordinator.storage.journal import TradeRecord

ZERO = Decimal(0)
HOUR_MS = 3_600_000


def funding_possible(entry_ms: int, exit_ms: int) -> bool:
    """Whether a funding time can fall in ``[entry_ms, exit_ms]``.

    Binance settles funding only on the hour (every 8, 4 or 1 hours depending on the symbol), so a
    position opened and closed between two hours paid none and needs no income request (weight 30).
    """
    return (exit_ms // HOUR_MS) * HOUR_MS >= entry_ms


def _vwap(fills: Sequence[Fill]) -> tuple[Decimal, Decimal]:
    """(quantity, volume-weighted price) of ``fills`` (price 0 when there are none)."""
    qty = sum((f.qty for f in fills), ZERO)
    if qty == 0:
        return ZERO, ZERO
    return qty, sum((f.qty * f.price for f in fills), ZERO) / qty


def trade_of(
    intent: Intent,
    orders: Sequence[Order],
    now_ms: int,
    fallback_exit: Decimal | None = None,
) -> TradeRecord | None:
    """The round trip of a closed intent from its orders' fills; ``None`` when no exposure was taken.

    Entry and exit prices are the VWAP of the entry's and the exit legs' fills.  A position closed
    outside our legs (liquidation, by hand) has no exit fill of ours: its exit price is
    ``fallback_exit`` (the mark price when the close was seen), else the entry price, and its reason
    ``position_closed_outside``.  The realised PnL is the venue's (the exit fills' ``realized_pnl``)
    when it reported one, else computed from the prices; fees are the USDT commissions of every fill.
    Funding is 0 here: the caller sets what the position paid (from the income history).
    """
    entry_fills = [f for o in orders if o.kind is OrderKind.ENTRY for f in o.fills]
    exit_orders = [o for o in orders if o.kind in EXIT_KINDS and o.fills]
    exit_fills = sorted((f for o in exit_orders for f in o.fills), key=lambda f: f.time_ms)
    qty, entry_price = _vwap(entry_fills)
    if qty == 0:
        return None
    sign = Decimal(1) if intent.side is OrderSide.BUY else Decimal(-1)
    exit_qty, exit_price = _vwap(exit_fills)
    if exit_fills:
        main = max(exit_orders, key=lambda o: sum((f.qty for f in o.fills), ZERO))
        reason = main.kind.value
        exit_ms = exit_fills[-1].time_ms
    else:
        exit_price = fallback_exit if fallback_exit is not None else entry_price
        reason = "position_closed_outside"
        exit_ms = now_ms
    venue_pnl = [f.realized_pnl for f in exit_fills]
    if any(p != 0 for p in venue_pnl):
        realised = sum(venue_pnl, ZERO)
    else:
        realised = sign * (exit_price - entry_price) * (exit_qty if exit_fills else qty)
    fees = sum(
        (f.commission for f in (*entry_fills, *exit_fills) if f.commission_asset in ("USDT", "")), ZERO
    )
    return TradeRecord(
        intent_id=intent.intent_id,
        symbol=intent.symbol,
        side="LONG" if intent.side is OrderSide.BUY else "SHORT",
        entry_ms=min(f.time_ms for f in entry_fills),
        exit_ms=max(exit_ms, min(f.time_ms for f in entry_fills)),
        entry_price=entry_price,
        exit_price=exit_price,
        qty=qty,
        realised_pnl=realised,
        fees=fees,
        funding=ZERO,
        exit_reason=reason,
    )
