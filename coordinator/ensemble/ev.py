"""Expected value after costs and the Kelly size suggestion, in bps of notional.

For a direction with probability ``p`` of being right over the horizon, a take-profit ``tp`` and a
stop ``sl`` (distances in bps)::

    EV = p_tp · tp - (1 - p_tp) · sl - fees - slippage - funding

``p_tp`` is the probability of reaching the take-profit rather than the stop.  With
``bracket_odds=False`` it is ``p`` itself (the textbook formula).  With ``bracket_odds=True`` (the
ensemble's default) the odds of ``p`` are scaled by ``sl / tp``: ``p_tp / (1 - p_tp) = p / (1 - p) ·
sl / tp``.  For a symmetric bracket both are the same; for an asymmetric one the adjustment is what
makes an uninformed ``p = 0.5`` worth exactly 0 gross (a driftless price hits +tp before -sl with
probability sl / (tp + sl)), where the textbook formula would show ``0.5 · (tp - sl)`` of free edge
whenever the take-profit is wider than the stop.

Fees (round trip, from :class:`~xylen.config.schema.TradingConfig`): ``market`` entries pay the taker
fee twice; ``limit`` and ``maker_preferred`` entries pay the maker fee on entry and the taker fee on
exit (stops and take-profits are ``*_MARKET`` orders).  ``maker_preferred`` is priced as filling as
maker; its taker fallback after ``maker_timeout_seconds`` is taken only when the trade, re-priced
with :meth:`Costs.taker` (taker fee and slippage on both legs) by
:func:`~coordinator.ensemble.resolve.bracket_ev_bps`, still has a positive EV
(:mod:`coordinator.entries`).  Slippage is charged on every taker leg (twice for market entries,
once otherwise).

Funding: Binance's rate per interval (fraction; longs pay when positive).  The expected cost over the
horizon is ``rate · 1e4 · (number of funding times in the horizon)`` with the sign of the position:
the number is exact when the next funding time is known, else prorated (horizon / interval).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from xylen.config.schema import TradingConfig

MS_PER_HOUR = 3_600_000


@dataclass(frozen=True, slots=True)
class Costs:
    """Costs of one round trip in bps of notional, apart from funding."""

    fees_bps: float
    slippage_bps: float

    @property
    def total_bps(self) -> float:
        return self.fees_bps + self.slippage_bps

    @classmethod
    def from_trading(cls, trading: TradingConfig) -> Costs:
        """Round-trip fees and slippage for the configured entry style (see the module docstring)."""
        if trading.entry == "market":
            return cls.taker(trading)
        return cls(trading.maker_fee_bps + trading.taker_fee_bps, trading.slippage_bps)

    @classmethod
    def taker(cls, trading: TradingConfig) -> Costs:
        """Round-trip costs when both legs take: a market entry, or a maker entry's fallback."""
        return cls(2.0 * trading.taker_fee_bps, 2.0 * trading.slippage_bps)


def funding_bps(
    funding_rate: float,
    long: bool,
    horizon_ms: int,
    *,
    now_ms: int = 0,
    next_funding_ms: int | None = None,
    interval_hours: float = 8.0,
) -> float:
    """Expected funding paid over the horizon in bps (negative: received)."""
    interval_ms = interval_hours * MS_PER_HOUR
    if next_funding_ms is None:
        count = horizon_ms / interval_ms
    elif next_funding_ms > now_ms + horizon_ms:
        count = 0.0
    else:
        count = 1.0 + math.floor((now_ms + horizon_ms - max(next_funding_ms, now_ms)) / interval_ms)
    paid = funding_rate * 1e4 * count
    return paid if long else -paid


def tp_probability(p: float, tp_bps: float, sl_bps: float, bracket_odds: bool = True) -> float:
    """Probability of reaching the take-profit first (see the module docstring)."""
    if not bracket_odds or tp_bps == sl_bps:
        return p
    if p <= 0.0 or p >= 1.0:
        return p
    odds = p / (1.0 - p) * sl_bps / tp_bps
    return odds / (1.0 + odds)


def expected_value_bps(
    p: float,
    tp_bps: float,
    sl_bps: float,
    costs_bps: float,
    funding_cost_bps: float = 0.0,
    *,
    bracket_odds: bool = True,
) -> float:
    """EV of a trade in bps of notional after costs and funding."""
    q = tp_probability(p, tp_bps, sl_bps, bracket_odds)
    return q * tp_bps - (1.0 - q) * sl_bps - costs_bps - funding_cost_bps


def kelly_fraction(p: float, tp_bps: float, sl_bps: float, *, bracket_odds: bool = True) -> float:
    """Kelly suggestion ``f* = q - (1 - q) / b`` with ``b = tp / sl``, floored at 0."""
    if tp_bps <= 0.0 or sl_bps <= 0.0:
        return 0.0
    q = tp_probability(p, tp_bps, sl_bps, bracket_odds)
    b = tp_bps / sl_bps
    return max(0.0, q - (1.0 - q) / b)


def bracket_bps(
    legs: Iterable[tuple[float | None, float | None, float]],
    price: float,
    atr_bps: float,
    stop_atr_multiple: float,
    take_profit_atr_multiple: float,
) -> tuple[float, float] | None:
    """(stop, take-profit) distances in bps of ``price``.

    ``legs`` are the ``(stop_loss, take_profit, weight)`` of the votes used: their weighted mean
    where they carry a bracket, else the ATR multiples, else None.  The one definition, used by
    :meth:`Ensemble.decide` and by the journal when it recomputes a logged decision.
    """
    if not (math.isfinite(price) and price > 0.0):
        return None
    sl_sum = tp_sum = w_sum = 0.0
    for stop_loss, take_profit, w in legs:
        if stop_loss is None or take_profit is None:
            continue
        sl = abs(price - stop_loss) / price * 1e4
        tp = abs(take_profit - price) / price * 1e4
        if sl > 0.0 and tp > 0.0 and math.isfinite(sl) and math.isfinite(tp):
            sl_sum += w * sl
            tp_sum += w * tp
            w_sum += w
    if w_sum > 0.0:
        return sl_sum / w_sum, tp_sum / w_sum
    if math.isfinite(atr_bps) and atr_bps > 0.0:
        return atr_bps * stop_atr_multiple, atr_bps * take_profit_atr_multiple
    return None
