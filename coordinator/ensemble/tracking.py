"""Per-model performance: hit rate, log-loss, Brier score, expected calibration error.

Running sums over every outcome a model voted on (of its calibrated probability, as the ensemble
used it), plus the ECE of the recent window of outcomes kept for calibration.  The weight history
is written by the store (``ensemble_weight_history``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from coordinator.ensemble.calibration import expected_calibration_error
from coordinator.ensemble.weighting import binary_log_loss


@dataclass(slots=True)
class ModelTracker:
    """Running performance sums of one model."""

    n: int = 0
    hits: int = 0
    sum_log_loss: float = 0.0
    sum_brier: float = 0.0
    last_ms: int | None = None

    def update(self, q: float, label: int, timestamp_ms: int) -> None:
        """Count one outcome with calibrated probability ``q``; a hit is ``(q > 0.5) == label``."""
        self.n += 1
        self.hits += int((q > 0.5) == bool(label))
        self.sum_log_loss += binary_log_loss(q, label)
        self.sum_brier += (q - label) ** 2
        self.last_ms = timestamp_ms


@dataclass(frozen=True, slots=True)
class ModelStats:
    """A snapshot of one model's performance and current weight."""

    model_id: str
    n: int
    hit_rate: float
    log_loss: float
    brier: float
    ece: float
    weight: float
    calibrated: bool
    members: tuple[str, ...] = field(default=(), compare=False)
    """The servers seen voting for this model since start (twins share one id); not persisted."""


def snapshot(
    model_id: str,
    tracker: ModelTracker,
    window_probs: list[float],
    window_labels: list[int],
    weight: float,
    calibrated: bool,
    members: tuple[str, ...] = (),
) -> ModelStats:
    """The stats of one model; the ECE is over the recent window (calibrated probabilities)."""
    n = tracker.n
    return ModelStats(
        model_id=model_id,
        n=n,
        hit_rate=tracker.hits / n if n else math.nan,
        log_loss=tracker.sum_log_loss / n if n else math.nan,
        brier=tracker.sum_brier / n if n else math.nan,
        ece=expected_calibration_error(np.asarray(window_probs), np.asarray(window_labels, dtype=np.float64)),
        weight=weight,
        calibrated=calibrated,
        members=members,
    )
