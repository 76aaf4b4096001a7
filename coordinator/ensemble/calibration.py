"""Per-model probability calibration: isotonic regression fitted out of time, evaluated with numpy.

Until a model has ``calibration_min_samples`` logged outcomes its raw probability is shrunk toward
0.5 (``p -> 0.5 + shrink * (p - 0.5)``).  After that, every ``calibration_refit_hours`` of outcome
time a candidate isotonic calibrator is fitted on the older outcomes of the window and compared
with the calibration in use on the most recent ``HOLDOUT_FRACTION`` of them; it replaces it only
when its holdout log-loss is not worse.  The calibrator deployed is exactly the one evaluated (fitted
on the older part), never refitted on the holdout.  A fitted calibrator is stored as its thresholds
(``X_thresholds_``, ``y_thresholds_``) and evaluated with :func:`numpy.interp`, which is what
scikit-learn's ``IsotonicRegression.predict`` computes with ``out_of_bounds="clip"``, without its
per-call overhead.  The fit is on equal-count bins of at least ``MIN_BIN`` samples (see
:func:`fit_isotonic`), so no block of the map rests on a handful of outcomes.  Every probability
leaving this module is clipped to ``[EPS, 1 - EPS]`` (:func:`xylen.probability.clip_probability`).

One probability at a time (the ensemble's hot path) is mapped by :func:`interp_one`, the arithmetic
of :func:`numpy.interp` on Python floats: the same bits without numpy's per-call cost.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.isotonic import IsotonicRegression

from xylen.probability import clip_probability

EPS = 0.01
"""No calibrated probability of a direction over the horizon is more certain than 99 %."""

HOLDOUT_FRACTION = 0.25
MIN_HOLDOUT = 20
MIN_BIN = 25
MAX_BINS = 50

FloatArray = NDArray[np.float64]


def interp_one(p: float, xs: Sequence[float], ys: Sequence[float]) -> float:
    """``numpy.interp(p, xs, ys)`` for one value, with numpy's arithmetic (so bit-identical).

    ``xs`` non-decreasing; outside ``[xs[0], xs[-1]]`` the end values; on a threshold its value;
    inside, ``slope * (p - xs[j]) + ys[j]`` over the segment ``xs[j] <= p < xs[j + 1]``.
    """
    if p != p:  # NaN stays NaN, as numpy answers
        return p
    last = len(xs) - 1
    if p >= xs[last]:
        return ys[last]
    if p < xs[0]:
        return ys[0]
    j = bisect_right(xs, p) - 1
    x0, y0 = xs[j], ys[j]
    if x0 == p:
        return y0
    x1, y1 = xs[j + 1], ys[j + 1]
    slope = (y1 - y0) / (x1 - x0)
    out = slope * (p - x0) + y0
    if out != out:  # numpy retries from the other end, then takes a flat segment's value
        out = slope * (p - x1) + y1
        if out != out and y0 == y1:
            out = y0
    return out


def shrink(p: float, factor: float) -> float:
    """The uncalibrated fallback: ``0.5 + factor * (p - 0.5)``, clipped."""
    return clip_probability(0.5 + factor * (p - 0.5), EPS)


def log_loss(p: FloatArray, y: FloatArray) -> float:
    """Mean binary log-loss of probabilities ``p`` (clipped to [EPS, 1-EPS]) for labels ``y``."""
    q = np.clip(p, EPS, 1.0 - EPS)
    return float(-np.mean(y * np.log(q) + (1.0 - y) * np.log1p(-q)))


@dataclass(frozen=True, slots=True, eq=False)
class Calibrator:
    """A fitted isotonic map, as its thresholds: ``p -> interp(p, x, y)`` (float64 arrays)."""

    x: FloatArray
    y: FloatArray
    fitted_ms: int
    n_samples: int
    holdout_logloss: float
    xs: tuple[float, ...] = field(init=False, repr=False, compare=False)
    ys: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # the thresholds as Python floats, for :func:`interp_one` on the hot path
        object.__setattr__(self, "xs", tuple(float(v) for v in self.x))
        object.__setattr__(self, "ys", tuple(float(v) for v in self.y))

    def __call__(self, p: float) -> float:
        return clip_probability(interp_one(p, self.xs, self.ys), EPS)

    def apply(self, p: FloatArray) -> FloatArray:
        """Vectorised :meth:`__call__`."""
        out: FloatArray = np.clip(np.interp(p, self.x, self.y), EPS, 1.0 - EPS)
        return out

    def to_json(self) -> dict[str, Any]:
        """The thresholds and metadata as JSON-ready values (floats round-trip exactly)."""
        return {
            "x": [float(v) for v in self.x],
            "y": [float(v) for v in self.y],
            "fitted_ms": self.fitted_ms,
            "n_samples": self.n_samples,
            "holdout_logloss": self.holdout_logloss,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Calibrator:
        return cls(
            x=np.asarray(data["x"], dtype=np.float64),
            y=np.asarray(data["y"], dtype=np.float64),
            fitted_ms=int(data["fitted_ms"]),
            n_samples=int(data["n_samples"]),
            holdout_logloss=float(data["holdout_logloss"]),
        )


def fit_isotonic(
    p: FloatArray,
    y: FloatArray,
    fitted_ms: int = 0,
    holdout_logloss: float = math.nan,
    *,
    min_bin: int = MIN_BIN,
    max_bins: int = MAX_BINS,
) -> Calibrator:
    """Fit an increasing isotonic map from raw probabilities ``p`` to labels ``y``.

    The samples are first grouped into equal-count bins by ``p`` (at least ``min_bin`` each, at most
    ``max_bins`` bins); the isotonic regression is fitted on the bins' mean ``p`` and mean label,
    weighted by their counts.  Plain isotonic regression on 0/1 labels puts the few most extreme
    samples into blocks of their own and answers 0.01 or 0.99 there, a near-certainty the next
    outlier pays ``-log(0.01)`` for; binning bounds the noise of every block.
    """
    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    p_sorted, y_sorted = p[order], y[order]
    n_bins = max(1, min(max_bins, len(p) // max(1, min_bin)))
    edges = np.linspace(0, len(p), n_bins + 1).astype(np.int64)
    counts = np.diff(edges).astype(np.float64)
    x_bin = np.add.reduceat(p_sorted, edges[:-1]) / counts
    y_bin = np.add.reduceat(y_sorted, edges[:-1]) / counts
    if n_bins == 1:
        x_thr, y_thr = x_bin, np.clip(y_bin, EPS, 1.0 - EPS)
    else:
        iso = IsotonicRegression(y_min=EPS, y_max=1.0 - EPS, increasing=True, out_of_bounds="clip")
        iso.fit(x_bin, y_bin, sample_weight=counts)
        x_thr, y_thr = iso.X_thresholds_, iso.y_thresholds_
    return Calibrator(
        x=np.asarray(x_thr, dtype=np.float64),
        y=np.asarray(y_thr, dtype=np.float64),
        fitted_ms=fitted_ms,
        n_samples=len(p),
        holdout_logloss=holdout_logloss,
    )


@dataclass(frozen=True, slots=True)
class RefitResult:
    """One out-of-time comparison: candidate vs the calibration in use, on the same holdout."""

    accepted: bool
    candidate_logloss: float
    current_logloss: float
    n_fit: int
    n_holdout: int


@dataclass(slots=True)
class ModelCalibration:
    """The calibration state of one model: the calibrator in use (or None) and its schedule."""

    shrink_factor: float
    calibrator: Calibrator | None = None
    last_refit_ms: int | None = None

    def __call__(self, p: float) -> float:
        """The calibrated probability of raw ``p``."""
        if self.calibrator is None:
            return shrink(p, self.shrink_factor)
        return self.calibrator(p)

    def apply(self, p: FloatArray) -> FloatArray:
        """Vectorised :meth:`__call__`."""
        if self.calibrator is None:
            out: FloatArray = np.clip(0.5 + self.shrink_factor * (p - 0.5), EPS, 1.0 - EPS)
            return out
        return self.calibrator.apply(p)

    def due(self, now_ms: int, n_samples: int, min_samples: int, refit_ms: int) -> bool:
        """True when there are enough samples and the refit interval has passed."""
        if n_samples < min_samples:
            return False
        return self.last_refit_ms is None or now_ms - self.last_refit_ms >= refit_ms

    def refit(
        self, probs: Sequence[float], labels: Sequence[int], now_ms: int, min_bin: int = MIN_BIN
    ) -> RefitResult | None:
        """Fit a candidate on the older part of the time-ordered window, keep it if the holdout agrees.

        Returns the comparison (None when the window cannot be split or has one class only).  The
        refit time is recorded either way, so a rejected candidate is retried only at the next
        scheduled refit.  ``min_bin``: the fewest samples in a bin of the isotonic fit (more when
        neighbouring outcomes overlap and each carries less information).
        """
        self.last_refit_ms = now_ms
        p = np.asarray(probs, dtype=np.float64)
        y = np.asarray(labels, dtype=np.float64)
        n_hold = max(MIN_HOLDOUT, int(len(p) * HOLDOUT_FRACTION))
        if len(p) - n_hold < MIN_HOLDOUT:
            return None
        p_fit, y_fit, p_hold, y_hold = p[:-n_hold], y[:-n_hold], p[-n_hold:], y[-n_hold:]
        if y_fit.min() == y_fit.max():
            return None  # one class only: nothing to learn
        candidate = fit_isotonic(p_fit, y_fit, min_bin=min_bin, fitted_ms=now_ms)
        new_loss = log_loss(candidate.apply(p_hold), y_hold)
        old_loss = log_loss(self.apply(p_hold), y_hold)
        accepted = new_loss <= old_loss
        if accepted:
            self.calibrator = Calibrator(candidate.x, candidate.y, now_ms, len(p_fit), new_loss)
        return RefitResult(accepted, new_loss, old_loss, len(p_fit), n_hold)


def expected_calibration_error(p: FloatArray, y: FloatArray, bins: int = 10) -> float:
    """ECE: equal-width bins on [0, 1], sum over bins of (bin share) x |mean p - mean y|."""
    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if len(p) == 0:
        return math.nan
    idx = np.minimum((p * bins).astype(np.int64), bins - 1)
    sum_p = np.bincount(idx, weights=p, minlength=bins)
    sum_y = np.bincount(idx, weights=y, minlength=bins)
    return float(np.sum(np.abs(sum_p - sum_y)) / len(p))
