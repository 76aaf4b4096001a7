"""Aggregation of calibrated probabilities and the uncertainty gates that turn a signal into HOLD.

Aggregation is in log-odds space: ``p = σ(Σ_i w_i · logit(q_i))`` over the models that voted, with
their weights renormalised to sum to 1 (missing models drop out).

Disagreement is the weighted standard deviation of the calibrated probabilities,
``sqrt(Σ_i w_i (q_i - q̄)²)`` with ``q̄ = Σ_i w_i q_i``, in probability units (0 for one vote or for
identical votes, at most 0.5).  It is compared with ``max_disagreement``.

The gates (all that apply are reported, see :class:`~coordinator.ensemble.types.HoldReason`):

* ``NO_QUORUM``: fewer usable votes than ``quorum``;
* ``HIGH_DISAGREEMENT``: disagreement > ``max_disagreement``;
* ``LOW_EDGE``: ``|p - 0.5| < min_edge`` (an edge of exactly 0 never trades);
* ``NO_BRACKET``: no stop / take-profit distance to price the trade;
* ``NON_POSITIVE_EV``: a bracket is known and the EV after costs is <= 0 (or not finite).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from coordinator.ensemble.calibration import EPS
from coordinator.ensemble.types import HoldReason
from xylen.probability import clip_probability, logit, sigmoid


def log_odds_average(probs: Sequence[float], weights: Sequence[float]) -> float:
    """``σ(Σ w_i logit(q_i))`` with weights renormalised to sum 1; 0.5 when there is no weight."""
    total = math.fsum(weights)
    if total <= 0.0:
        return 0.5
    z = math.fsum(w * logit(q, EPS) for q, w in zip(probs, weights, strict=True)) / total
    return clip_probability(sigmoid(z), EPS)


def weighted_disagreement(probs: Sequence[float], weights: Sequence[float]) -> float:
    """Weighted standard deviation of ``probs`` (weights renormalised); 0 without weight."""
    total = math.fsum(weights)
    if total <= 0.0:
        return 0.0
    pairs = list(zip(probs, weights, strict=True))
    mean = math.fsum([w * q for q, w in pairs]) / total
    var = math.fsum([w * (q - mean) ** 2 for q, w in pairs]) / total
    return math.sqrt(max(0.0, var))


def gate(
    *,
    n_votes: int,
    quorum: int,
    disagreement: float,
    max_disagreement: float,
    probability: float,
    min_edge: float,
    has_bracket: bool,
    ev_bps: float,
) -> tuple[HoldReason, ...]:
    """Every hold reason that applies, in a fixed order; empty means the signal may trade."""
    reasons: list[HoldReason] = []
    if n_votes < quorum:
        reasons.append(HoldReason.NO_QUORUM)
    if disagreement > max_disagreement:
        reasons.append(HoldReason.HIGH_DISAGREEMENT)
    edge = abs(probability - 0.5)
    if edge < min_edge or edge == 0.0:
        reasons.append(HoldReason.LOW_EDGE)
    if not has_bracket:
        reasons.append(HoldReason.NO_BRACKET)
    if has_bracket and not (ev_bps > 0.0):  # NaN (not computable) counts as not positive
        reasons.append(HoldReason.NON_POSITIVE_EV)
    return tuple(reasons)
