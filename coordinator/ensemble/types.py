"""The ensemble's value types: what goes in (:class:`Vote`, :class:`Market`, :class:`Outcome`) and what
comes out (:class:`Decision`).  All frozen; times are int64 ms UTC; distances and EV are in bps of
notional.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from coordinator.ensemble.pool import QualitySnapshot
from coordinator.ensemble.weighting import BASE_RATE


class Action(str, Enum):
    """What the ensemble (or one model) suggests."""

    LONG = "LONG"
    SHORT = "SHORT"
    HOLD = "HOLD"


class HoldReason(str, Enum):
    """Why a decision is HOLD.  Every reason that applies is reported, not only the first."""

    NO_QUORUM = "NO_QUORUM"  # fewer usable votes than ``quorum``
    HIGH_DISAGREEMENT = "HIGH_DISAGREEMENT"  # weighted std of calibrated probabilities > max_disagreement
    LOW_EDGE = "LOW_EDGE"  # |p - 0.5| < min_edge
    NO_BRACKET = "NO_BRACKET"  # no stop / take-profit distance (no vote brackets and no ATR)
    NON_POSITIVE_EV = "NON_POSITIVE_EV"  # expected value after all costs <= 0 bps


BACKEND_FAMILIES = {"lightgbm": "gbdt", "onnx": "gbdt"}
"""Backends that serve the same trained model (an ONNX export of a LightGBM booster) share a family."""


def fingerprint(backend: str, model_version: str) -> str:
    """``"<family>:<model_version>"``: equal for the LightGBM and ONNX servers of one training run."""
    return f"{BACKEND_FAMILIES.get(backend, backend)}:{model_version}"


@dataclass(frozen=True, slots=True)
class Vote:
    """One model server's answer for this heartbeat (the ``/predict`` reply of the wire contract).

    ``action`` is kept for the record only: the ensemble uses ``prob_up``.  ``stop_loss`` and
    ``take_profit`` are prices; the ensemble uses their distances to the market price.
    ``fingerprint`` names the model behind the answer (``"<backend family>:<model_version>"``, see
    :func:`fingerprint`): votes with the same non-empty fingerprint come from one model served
    twice (LightGBM and its ONNX twin) and count as one vote.  Empty: the server id stands for it.
    """

    model_id: str
    prob_up: float
    action: Action = Action.HOLD
    stop_loss: float | None = None
    take_profit: float | None = None
    latency_ms: float = 0.0
    fingerprint: str = ""

    @property
    def key(self) -> str:
        """The id the ensemble weighs and calibrates this vote under: fingerprint, else server id."""
        return self.fingerprint or self.model_id

    @property
    def usable(self) -> bool:
        """A finite probability in [0, 1] (anything else is counted as a missing vote)."""
        return math.isfinite(self.prob_up) and 0.0 <= self.prob_up <= 1.0


@dataclass(frozen=True, slots=True)
class Market:
    """Market context at the heartbeat.

    ``funding_rate`` is Binance's rate per funding interval as a fraction (0.0001 = 1 bp; longs pay
    when positive).  ``atr`` is in price units and gives the bracket when no vote carries one.
    ``next_funding_ms``, when known, makes the funding estimate count the actual funding times
    inside the horizon instead of prorating.
    """

    timestamp_ms: int
    price: float
    funding_rate: float = 0.0
    atr: float | None = None
    next_funding_ms: int | None = None
    funding_interval_hours: float = 8.0

    @property
    def atr_bps(self) -> float:
        """ATR in bps of price (NaN when unknown)."""
        if self.atr is None or not self.price > 0:
            return math.nan
        return self.atr / self.price * 1e4


@dataclass(frozen=True, slots=True)
class WeightedVote:
    """A vote as the ensemble used it: raw and calibrated probability and its normalised weight."""

    model_id: str
    prob_raw: float
    prob_calibrated: float
    weight: float


@dataclass(frozen=True, slots=True)
class Decision:
    """The ensemble's answer for one heartbeat.

    ``probability`` is the ensemble's calibrated P(up over the horizon); ``confidence`` is the
    probability of the chosen (or, for HOLD, the favoured) direction, ``max(p, 1 - p)``.
    ``expected_value_bps`` is the EV after costs of the favoured direction (also reported for a
    HOLD, so a log shows how far it was from trading).  ``size_fraction`` is the Kelly suggestion,
    0 for HOLD; the risk manager scales and caps it.  ``stop_loss``/``take_profit`` are prices
    (None when no bracket is known).  ``source`` is ``"pool"`` (the skill-weighted pool with the
    base rate, recalibrated), ``"log_odds"`` (a plain weighted log-odds average of the votes) or
    ``"meta"``.  ``votes`` carry each vote's share of the pool; ``base_weight`` is the base rate's
    share (the votes' weights and it sum to 1).  ``quality`` is the ensemble's record against the
    constant when the decision was taken (None when unknown).
    """

    timestamp_ms: int
    action: Action
    probability: float
    confidence: float
    expected_value_bps: float
    size_fraction: float
    stop_loss: float | None
    take_profit: float | None
    votes: tuple[WeightedVote, ...]
    reasons: tuple[HoldReason, ...]
    disagreement: float
    source: str = "log_odds"
    base_weight: float = 0.0
    quality: QualitySnapshot | None = None

    @property
    def is_trade(self) -> bool:
        return self.action is not Action.HOLD

    def pool_weights(self) -> dict[str, float]:
        """Each voting model's share of the pool and the base rate's (under ``BASE_RATE``)."""
        return {**{v.model_id: v.weight for v in self.votes}, BASE_RATE: self.base_weight}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (for the decisions log, the dashboard and metrics)."""
        return {
            "timestamp_ms": self.timestamp_ms,
            "action": self.action.value,
            "probability": self.probability,
            "confidence": self.confidence,
            "expected_value_bps": self.expected_value_bps,
            "size_fraction": self.size_fraction,
            "stop_loss": self.stop_loss,
            "take_profit": self.take_profit,
            "votes": [
                {
                    "model_id": v.model_id,
                    "prob_raw": v.prob_raw,
                    "prob": v.prob_calibrated,
                    "weight": v.weight,
                }
                for v in self.votes
            ],
            "reasons": [r.value for r in self.reasons],
            "disagreement": self.disagreement,
            "source": self.source,
            "base_weight": self.base_weight,
        }


def _slot_setters(cls: Any) -> tuple[Any, ...]:
    return tuple(cls.__dict__[name].__set__ for name in cls.__slots__)


_new = object.__new__
_VOTE_SLOTS = _slot_setters(WeightedVote)
_DECISION_SLOTS = _slot_setters(Decision)


def make_weighted_vote(model_id: str, prob_raw: float, prob_calibrated: float, weight: float) -> WeightedVote:
    """``WeightedVote(model_id, prob_raw, prob_calibrated, weight)``, built at half the cost.

    The frozen dataclass's generated ``__init__`` sets each field through ``object.__setattr__``;
    this sets the same slots through their descriptors (the ensemble builds one per vote per
    decision).  The result is an ordinary, equal instance.
    """
    vote = _new(WeightedVote)
    set_model, set_raw, set_calibrated, set_weight = _VOTE_SLOTS
    set_model(vote, model_id)
    set_raw(vote, prob_raw)
    set_calibrated(vote, prob_calibrated)
    set_weight(vote, weight)
    return vote


(
    _set_timestamp,
    _set_action,
    _set_probability,
    _set_confidence,
    _set_ev,
    _set_size,
    _set_stop,
    _set_take,
    _set_votes,
    _set_reasons,
    _set_disagreement,
    _set_source,
    _set_base_weight,
    _set_quality,
) = _DECISION_SLOTS


def make_decision(
    timestamp_ms: int,
    action: Action,
    probability: float,
    confidence: float,
    expected_value_bps: float,
    size_fraction: float,
    stop_loss: float | None,
    take_profit: float | None,
    votes: tuple[WeightedVote, ...],
    reasons: tuple[HoldReason, ...],
    disagreement: float,
    source: str,
    base_weight: float,
    quality: QualitySnapshot | None,
) -> Decision:
    """``Decision(...)`` with every field given, built like :func:`make_weighted_vote` (half the cost)."""
    d = _new(Decision)
    _set_timestamp(d, timestamp_ms)
    _set_action(d, action)
    _set_probability(d, probability)
    _set_confidence(d, confidence)
    _set_ev(d, expected_value_bps)
    _set_size(d, size_fraction)
    _set_stop(d, stop_loss)
    _set_take(d, take_profit)
    _set_votes(d, votes)
    _set_reasons(d, reasons)
    _set_disagreement(d, disagreement)
    _set_source(d, source)
    _set_base_weight(d, base_weight)
    _set_quality(d, quality)
    return d


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened after a heartbeat's horizon: the label and the raw probabilities then voted.

    ``timestamp_ms`` is when the label became known (decision time + horizon); it drives the
    decay of the weights and the calibration schedule.  ``label`` is 1 when the price rose over
    the horizon.  ``probs`` maps model id to the raw ``prob_up`` it sent; ``fingerprints`` maps a
    model id to its vote's fingerprint (absent: none); ``market`` is the context at decision time
    (used by the meta-learner).
    """

    timestamp_ms: int
    label: int
    probs: Mapping[str, float]
    market: Market
    decision_ms: int = 0
    fingerprints: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_votes(cls, votes: Sequence[Vote], market: Market, label: int, timestamp_ms: int) -> Outcome:
        """The outcome of a heartbeat whose ``votes`` were taken in ``market``."""
        return cls(
            timestamp_ms=timestamp_ms,
            label=int(label),
            probs={v.model_id: v.prob_up for v in votes if v.usable},
            market=market,
            decision_ms=market.timestamp_ms,
            fingerprints={v.model_id: v.fingerprint for v in votes if v.usable and v.fingerprint},
        )
