"""Position sizing: fixed fraction, fractional Kelly, fixed amount -- pure functions on ``Decimal``.

What "fraction of equity" means here (one meaning for every method): the **risk fraction**, the
share of equity lost if the stop is hit.  A fraction ``f`` gives ``quantity = f * equity / |entry -
stop|``.  This is the usual practice for fixed-fraction sizing, and it is exactly the bet Kelly's
formula assumes: lose ``f`` of the bankroll at the stop, win ``b * f`` at the take-profit, with
``b = |take_profit - entry| / |entry - stop|``.  Fees are not part of the stop distance (the margin
check in :mod:`coordinator.risk.checks` does count them).

* ``fixed_fraction``: ``f = fixed_fraction``.
* ``kelly``: ``f = max(0, p - (1 - p) / b) * kelly_fraction`` (``p`` is the calibrated probability
  that the trade reaches its take-profit first).
* ``fixed_amount``: ``quantity = fixed_amount_usd / entry`` (a notional).

Then, for every method, in this order: the risk fraction is capped at ``max_position_fraction``; the
notional is capped at ``max_notional`` (the caller's headroom: leverage, exposure and margin); the
quantity is rounded DOWN to the step grid by :class:`~coordinator.exchange.filters.SymbolRules`
(the one rounding place); an order below the exchange's minimum quantity or minimum notional is no
trade (quantity 0 and a named reason), never rounded up.

The reason names what stopped the trade: ``no_headroom`` when the headroom cannot hold one step of
the grid, or when it capped the size below the exchange's minimum; ``below_min_quantity`` or
``below_min_notional`` only when the size the method asked for is itself below the minimum.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from typing import Literal

from coordinator.exchange.filters import SymbolRules
from xylen.config.schema import RiskConfig

SizingMethod = Literal["fixed_fraction", "kelly", "fixed_amount"]
ZERO = Decimal(0)
ONE = Decimal(1)


class SizeRefusal(str, Enum):
    """Why sizing gave no quantity."""

    NO_EQUITY = "no_equity"
    INVALID_PRICE = "invalid_price"
    INVALID_STOP = "invalid_stop"
    INVALID_TAKE_PROFIT = "invalid_take_profit"
    NO_EDGE = "no_edge"
    NO_HEADROOM = "no_headroom"
    BELOW_MIN_QUANTITY = "below_min_quantity"
    BELOW_MIN_NOTIONAL = "below_min_notional"


@dataclass(frozen=True, slots=True)
class SizingParams:
    """The sizing part of :class:`~xylen.config.schema.RiskConfig`, as Decimals (built once)."""

    method: SizingMethod
    fixed_fraction: Decimal
    kelly_fraction: Decimal
    max_position_fraction: Decimal
    fixed_amount_usd: Decimal

    @classmethod
    def from_config(cls, risk: RiskConfig) -> SizingParams:
        """From a ``RiskConfig`` (floats become Decimals through ``str``, so 0.01 stays 0.01)."""
        return cls(
            method=risk.sizing,
            fixed_fraction=Decimal(str(risk.fixed_fraction)),
            kelly_fraction=Decimal(str(risk.kelly_fraction)),
            max_position_fraction=Decimal(str(risk.max_position_fraction)),
            fixed_amount_usd=Decimal(str(risk.fixed_amount_usd)),
        )


@dataclass(frozen=True, slots=True)
class SizeResult:
    """A quantity on the step grid (0 when refused), the risk fraction used, and why if refused."""

    quantity: Decimal
    fraction: Decimal
    refusal: SizeRefusal | None = None
    detail: str = ""


def kelly_fraction(probability: Decimal, payoff_ratio: Decimal) -> Decimal:
    """Full Kelly ``f* = p - (1 - p) / b``, floored at 0 (no edge, no bet).

    >>> kelly_fraction(Decimal("0.6"), Decimal("2"))
    Decimal('0.4')
    >>> kelly_fraction(Decimal("0.3"), Decimal("1"))
    Decimal('0')
    """
    if payoff_ratio <= 0:
        return ZERO
    value = probability - (ONE - probability) / payoff_ratio
    return value if value > 0 else ZERO


def _refuse(refusal: SizeRefusal, detail: str, fraction: Decimal = ZERO) -> SizeResult:
    return SizeResult(ZERO, fraction, refusal, detail)


def size_position(
    params: SizingParams,
    *,
    long: bool,
    equity: Decimal,
    entry: Decimal,
    stop: Decimal,
    take_profit: Decimal,
    probability: Decimal,
    rules: SymbolRules,
    max_notional: Decimal,
    market_order: bool = False,
) -> SizeResult:
    """The quantity for one entry (see the module docstring for the rules, in order)."""
    if equity <= 0:
        return _refuse(SizeRefusal.NO_EQUITY, f"equity {equity} <= 0")
    if entry <= 0:
        return _refuse(SizeRefusal.INVALID_PRICE, f"reference price {entry} <= 0")
    risk_per_unit = entry - stop if long else stop - entry
    if stop <= 0 or risk_per_unit <= 0:
        return _refuse(SizeRefusal.INVALID_STOP, f"stop {stop} is not on the losing side of {entry}")
    cap = params.max_position_fraction
    if params.method == "fixed_amount":
        quantity = params.fixed_amount_usd / entry
        fraction = quantity * risk_per_unit / equity
        if fraction > cap:
            fraction = cap
            quantity = cap * equity / risk_per_unit
    else:
        if params.method == "kelly":
            reward_per_unit = take_profit - entry if long else entry - take_profit
            if reward_per_unit <= 0:
                return _refuse(
                    SizeRefusal.INVALID_TAKE_PROFIT,
                    f"take-profit {take_profit} is not on the winning side of {entry}",
                )
            full = kelly_fraction(probability, reward_per_unit / risk_per_unit)
            fraction = full * params.kelly_fraction
            if fraction <= 0:
                return _refuse(SizeRefusal.NO_EDGE, f"Kelly fraction is 0 at p={probability}")
        else:
            fraction = params.fixed_fraction
        fraction = min(fraction, cap)
        quantity = fraction * equity / risk_per_unit
    step = rules.market_step_size if market_order else rules.step_size
    if max_notional < step * entry:
        return _refuse(
            SizeRefusal.NO_HEADROOM,
            f"notional headroom {max_notional} is below one step ({step} at {entry})",
            fraction,
        )
    capped = quantity * entry > max_notional
    if capped:
        quantity = max_notional / entry
    quantity = rules.round_quantity(quantity, market=market_order)
    min_qty = rules.market_min_qty if market_order else rules.min_qty
    if quantity <= 0 or quantity < min_qty:
        if capped:
            detail = f"notional headroom {max_notional} allows {quantity}, below the minimum {min_qty}"
            return _refuse(SizeRefusal.NO_HEADROOM, detail, fraction)
        return _refuse(
            SizeRefusal.BELOW_MIN_QUANTITY, f"quantity {quantity} below the minimum {min_qty}", fraction
        )
    if rules.min_notional > 0 and quantity * entry < rules.min_notional:
        if capped:
            detail = (
                f"notional headroom {max_notional} allows {quantity * entry},"
                f" below the exchange minimum {rules.min_notional}"
            )
            return _refuse(SizeRefusal.NO_HEADROOM, detail, fraction)
        return _refuse(
            SizeRefusal.BELOW_MIN_NOTIONAL,
            f"notional {quantity * entry} below the exchange minimum {rules.min_notional}",
            fraction,
        )
    return SizeResult(quantity, quantity * risk_per_unit / equity)
