"""The "Xylen Adaptive Consensus" ensemble: calibrated, weighted by skill over the base rate, gated.

Public API::

    Ensemble(config: EnsembleConfig, trading: TradingConfig, priors, *, store=None, ...)
    Ensemble.from_config(config: XylenConfig, store=None)
    ensemble.decide(votes: Sequence[Vote], market: Market) -> Decision      # pure read, < 0.1 ms
    ensemble.observe(outcome: Outcome) -> None                              # learn, refit, persist
    ensemble.weights(model_ids=None) -> dict[str, float]
    ensemble.stats() -> dict[str, ModelStats]
    ensemble.quality() -> QualitySnapshot                                  # the pool against the constant
    EnsembleStore.open(path) / EnsembleStore(conn)                          # SQLite, migration 0003

Types: :class:`Vote`, :class:`Market`, :class:`Outcome`, :class:`Decision`, :class:`WeightedVote`,
:class:`Action`, :class:`HoldReason`.  The building blocks (``calibration``, ``weighting``,
``gating``, ``ev``, ``meta``, ``tracking``) are pure and usable on their own.
"""

from coordinator.ensemble.ensemble import Ensemble
from coordinator.ensemble.ev import Costs, expected_value_bps, funding_bps, kelly_fraction, tp_probability
from coordinator.ensemble.pool import QualitySnapshot
from coordinator.ensemble.store import EnsembleStore
from coordinator.ensemble.tracking import ModelStats
from coordinator.ensemble.types import (
    Action,
    Decision,
    HoldReason,
    Market,
    Outcome,
    Vote,
    WeightedVote,
    fingerprint,
)

__all__ = [
    "Action",
    "Costs",
    "Decision",
    "Ensemble",
    "EnsembleStore",
    "HoldReason",
    "Market",
    "ModelStats",
    "Outcome",
    "QualitySnapshot",
    "Vote",
    "WeightedVote",
    "expected_value_bps",
    "fingerprint",
    "funding_bps",
    "kelly_fraction",
    "tp_probability",
]
