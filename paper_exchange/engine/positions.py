"""Position and margin arithmetic (pure functions on Decimals).

Rules (documented simplifications of Binance's):

* Entry price is the quantity-weighted average of the fills that opened or increased the
  position; a reduction realises ``closed_qty x (fill - entry) x sign`` and keeps the entry;
  a fill through zero closes the old side and opens the rest at the fill price.
* Maintenance margin = ``|amount| x mark x MMR`` with one bracket per symbol (the tier-1
  rate, 0.4 % by default, and Binance's tier-1 maintenance amount, which is 0).
* Initial margin = ``|amount| x mark / leverage``.
* Break-even price: entry moved by the opening and closing taker fees,
  ``entry x (1 + 2 x taker)`` for a long, ``entry x (1 - 2 x taker)`` for a short.
* Liquidation price with the position's margin ``W`` (isolated wallet, or for cross the cross
  wallet plus the other cross positions' unrealised PnL minus their maintenance margin, those
  held at their current mark): solve ``W + q (P - E) = MMR |q| P`` for ``P``, i.e.
  ``P = (q E - W) / (q - MMR |q|)``; no liquidation price (``0``) when ``P <= 0``.
"""

from __future__ import annotations

from decimal import Decimal

from paper_exchange.engine.models import MONEY, ZERO, Position


def signed(side: str, qty: Decimal) -> Decimal:
    """``qty`` with the sign of ``side`` (BUY positive)."""
    return qty if side == "BUY" else -qty


def apply_fill(pos: Position, side: str, qty: Decimal, price: Decimal) -> tuple[Decimal, Decimal]:
    """Apply a fill to ``pos``; returns ``(realised_pnl, closed_qty)``."""
    delta = signed(side, qty)
    amount = pos.amount
    if amount == 0 or (amount > 0) == (delta > 0):
        new_amount = amount + delta
        pos.entry_price = (abs(amount) * pos.entry_price + qty * price) / abs(new_amount)
        pos.amount = new_amount
        return ZERO, ZERO
    closed = min(qty, abs(amount))
    direction = Decimal(1) if amount > 0 else Decimal(-1)
    # Money is kept to 8 decimals, as Binance reports it, so that sums of realised PnL
    # add up exactly (an unrounded 28-digit quotient would be rounded again in the wallet).
    pnl = (closed * (price - pos.entry_price) * direction).quantize(MONEY)
    new_amount = amount + delta
    pos.amount = new_amount
    if new_amount == 0:
        pos.entry_price = ZERO
    elif (new_amount > 0) != (amount > 0):
        pos.entry_price = price
    return pnl, closed


def unrealized(pos: Position, mark: Decimal) -> Decimal:
    """Unrealised PnL at ``mark``."""
    return pos.amount * (mark - pos.entry_price) if pos.amount else ZERO


def notional(pos: Position, mark: Decimal) -> Decimal:
    """Signed notional at ``mark``."""
    return pos.amount * mark


def maint_margin(pos: Position, mark: Decimal, mmr: Decimal) -> Decimal:
    """Maintenance margin (tier 1, maintenance amount 0)."""
    return abs(pos.amount) * mark * mmr


def initial_margin(pos: Position, mark: Decimal, leverage: int) -> Decimal:
    """Initial margin of the position at ``mark``."""
    return abs(pos.amount) * mark / leverage


def break_even(pos: Position, taker: Decimal) -> Decimal:
    """Break-even price including opening and closing taker fees."""
    if pos.amount == 0:
        return ZERO
    factor = 1 + 2 * taker if pos.amount > 0 else 1 - 2 * taker
    return pos.entry_price * factor


def liquidation_price(amount: Decimal, entry: Decimal, margin: Decimal, mmr: Decimal) -> Decimal:
    """Price at which ``margin + amount (P - entry) == mmr |amount| P`` (0 if none)."""
    if amount == 0:
        return ZERO
    denom = amount - mmr * abs(amount)
    price = (amount * entry - margin) / denom
    return price if price > 0 else ZERO
