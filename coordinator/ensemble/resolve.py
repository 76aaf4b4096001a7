"""From an aggregated probability to a decision: bracket, EV, Kelly, prices and gates.

The one definition of what follows aggregation, used by :meth:`Ensemble.decide` and by the
journal when it recomputes a logged decision from its rows alone
(:func:`coordinator.storage.journal.recompute_decision`), so the two can never drift apart.
:class:`DecisionParams` holds the config values a decision depends on besides learned state.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from coordinator.ensemble.ev import bracket_bps, expected_value_bps, funding_bps, kelly_fraction
from coordinator.ensemble.gating import gate
from coordinator.ensemble.types import Action, HoldReason, Market


@dataclass(frozen=True, slots=True)
class DecisionParams:
    """The config values a decision uses besides the ensemble's learned state."""

    quorum: int
    min_edge: float
    max_disagreement: float
    costs_bps: float
    horizon_ms: int
    stop_atr_multiple: float
    take_profit_atr_multiple: float
    bracket_odds: bool

    def to_json(self) -> str:
        return _params_json(self)

    @classmethod
    def from_json(cls, text: str) -> DecisionParams:
        data = json.loads(text)
        return cls(
            quorum=int(data["quorum"]),
            min_edge=float(data["min_edge"]),
            max_disagreement=float(data["max_disagreement"]),
            costs_bps=float(data["costs_bps"]),
            horizon_ms=int(data["horizon_ms"]),
            stop_atr_multiple=float(data["stop_atr_multiple"]),
            take_profit_atr_multiple=float(data["take_profit_atr_multiple"]),
            bracket_odds=bool(data["bracket_odds"]),
        )


@functools.lru_cache(maxsize=64)
def _params_json(params: DecisionParams) -> str:
    """The JSON of ``params`` (logged with every decision; the values are fixed, so built once)."""
    return json.dumps(asdict(params), sort_keys=True)


@dataclass(frozen=True, slots=True)
class Resolved:
    """Everything of a decision that follows from the aggregated probability."""

    action: Action
    probability: float
    confidence: float
    expected_value_bps: float
    size_fraction: float
    stop_loss: float | None
    take_profit: float | None
    disagreement: float
    reasons: tuple[HoldReason, ...]


def _ev_bps(
    p_dir: float, long: bool, sl_bps: float, tp_bps: float, market: Market, params: DecisionParams
) -> float:
    """EV after ``params.costs_bps`` and the funding expected over the horizon (the one composition)."""
    funding = funding_bps(
        market.funding_rate,
        long,
        params.horizon_ms,
        now_ms=market.timestamp_ms,
        next_funding_ms=market.next_funding_ms,
        interval_hours=market.funding_interval_hours,
    )
    return expected_value_bps(
        p_dir, tp_bps, sl_bps, params.costs_bps, funding, bracket_odds=params.bracket_odds
    )


def bracket_ev_bps(
    p_dir: float, long: bool, stop_loss: float, take_profit: float, market: Market, params: DecisionParams
) -> float:
    """EV of entering now at ``market.price`` into a bracket with fixed prices, as :func:`resolve` prices it.

    ``p_dir`` is the probability of the trade's direction (a decision's ``confidence``); the stop and
    take-profit distances are measured from ``market.price``, so a price that moved towards the
    take-profit since the decision leaves less to win and more to lose.  ``-inf`` when the price is
    not strictly between the stop and the take-profit (the bracket would fire at once).  Used to
    re-price a maker entry's taker fallback with ``params.costs_bps`` = :meth:`Costs.taker`.
    """
    price = market.price
    if not (math.isfinite(price) and price > 0.0):
        return -math.inf
    sign = 1.0 if long else -1.0
    sl_bps = sign * (price - stop_loss) / price * 1e4
    tp_bps = sign * (take_profit - price) / price * 1e4
    if not (sl_bps > 0.0 and tp_bps > 0.0):
        return -math.inf
    return _ev_bps(p_dir, long, sl_bps, tp_bps, market, params)


def resolve(
    p: float,
    disagreement: float,
    n_votes: int,
    legs: Iterable[tuple[float | None, float | None, float]],
    market: Market,
    params: DecisionParams,
) -> Resolved:
    """The decision for probability ``p`` (of up) given the votes' ``(stop, take-profit, weight)`` legs."""
    return Resolved(*resolve_fields(p, disagreement, n_votes, legs, market, params))


ResolvedFields = tuple[
    Action, float, float, float, float, float | None, float | None, float, tuple[HoldReason, ...]
]
""":class:`Resolved`'s fields in order (what :meth:`Ensemble.decide` unpacks without the object)."""


def resolve_fields(
    p: float,
    disagreement: float,
    n_votes: int,
    legs: Iterable[tuple[float | None, float | None, float]],
    market: Market,
    params: DecisionParams,
) -> ResolvedFields:
    """:func:`resolve` as a plain tuple in :class:`Resolved`'s field order (the one computation)."""
    long = p >= 0.5
    p_dir = p if long else 1.0 - p
    price = market.price
    bracket = bracket_bps(
        legs, price, market.atr_bps, params.stop_atr_multiple, params.take_profit_atr_multiple
    )
    ev = math.nan
    size = 0.0
    stop = take = None
    if bracket is not None:
        sl_bps, tp_bps = bracket
        ev = _ev_bps(p_dir, long, sl_bps, tp_bps, market, params)
        size = kelly_fraction(p_dir, tp_bps, sl_bps, bracket_odds=params.bracket_odds)
        sign = 1.0 if long else -1.0
        stop = price * (1.0 - sign * sl_bps / 1e4)
        take = price * (1.0 + sign * tp_bps / 1e4)
    reasons = gate(
        n_votes=n_votes,
        quorum=params.quorum,
        disagreement=disagreement,
        max_disagreement=params.max_disagreement,
        probability=p,
        min_edge=params.min_edge,
        has_bracket=bracket is not None,
        ev_bps=ev,
    )
    if reasons:
        return Action.HOLD, p, p_dir, ev, 0.0, stop, take, disagreement, reasons
    return (Action.LONG if long else Action.SHORT), p, p_dir, ev, size, stop, take, disagreement, reasons
