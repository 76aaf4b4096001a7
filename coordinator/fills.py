"""Fill arithmetic of the coordinator: the one volume-weighted average price.

An order's ``avg_price`` (:mod:`coordinator.orders.machine`) and a round trip's entry and exit
prices (:mod:`coordinator.trades`) are both the VWAP of fills; both use :func:`vwap`.  Exact
``Decimal`` arithmetic, no rounding: the venue's own average is rounded to its tick, ours is not.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Protocol

ZERO = Decimal(0)


class Priced(Protocol):
    """A fill as far as its average price goes: a quantity at a price."""

    @property
    def qty(self) -> Decimal: ...

    @property
    def price(self) -> Decimal: ...


def vwap(fills: Iterable[Priced]) -> tuple[Decimal, Decimal | None]:
    """``(total quantity, volume-weighted average price)`` of ``fills``; the price is ``None`` when
    the total quantity is 0 (no fills)."""
    qty = ZERO
    notional = ZERO
    for fill in fills:
        qty += fill.qty
        notional += fill.qty * fill.price
    return qty, (notional / qty if qty else None)
