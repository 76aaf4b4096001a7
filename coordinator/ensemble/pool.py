"""The pooled probability's own calibration and its quality against the constant base rate.

Pooling (see :mod:`~coordinator.ensemble.ensemble`) gives a log-odds ``z``.  The probability the
ensemble answers is ``σ(a + b·z)``: a logistic recalibration fitted on the ensemble's own recent
outcomes (``z`` as pooled before each outcome was known, so the fit is out of sample) with a Gaussian
prior centred on no change (``a = 0``, ``b = 1``).  The prior is worth ``prior_outcomes`` outcomes of
information: its precision is that many times the Fisher information of one outcome at ``p = 1/2``,
``diag(1/4, E[z²]/4)``, so it weighs the same against the data whatever the spread of ``z``.  With few
outcomes the map stays at the identity; a pool that turns out over-confident gets ``b < 1``.  The
fit is a few Newton steps on a convex objective (the prior makes it strictly convex), always started
from the identity, so the same window gives the same map (a restart refits it from the stored window).

:class:`PoolQuality` keeps the ensemble's answered probability, the base rate and the label of the
most recent outcomes and reports log-loss, Brier and ECE (15 equal-width bins) of the ensemble next
to the constant's log-loss and Brier on the same outcomes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from coordinator.ensemble.calibration import EPS
from coordinator.ensemble.weighting import binary_log_loss
from xylen.probability import sigmoid

ECE_BINS = 15
FloatArray = NDArray[np.float64]
NEWTON_STEPS = 8
MAX_LOGIT = math.log((1.0 - EPS) / EPS)


@dataclass(slots=True)
class PoolCalibration:
    """``p = σ(a + b·z)`` fitted by penalised maximum likelihood on a window of ``(z, label)``."""

    prior_outcomes: float
    a: float = 0.0
    b: float = 1.0
    n: int = 0
    fits: int = 0
    """How many times :meth:`fit` has run (the refit schedule is checked against it)."""

    def __call__(self, z: float) -> float:
        """The recalibrated probability of pooled log-odds ``z``, clipped to ``[EPS, 1 - EPS]``."""
        x = max(-MAX_LOGIT, min(MAX_LOGIT, self.a + self.b * z))
        return min(1.0 - EPS, max(EPS, sigmoid(x)))

    def fit(self, z: Iterable[float] | FloatArray, labels: Iterable[int] | FloatArray) -> None:
        """Refit ``a`` and ``b`` on the window (time order does not matter: every point weighs 1)."""
        zs = _floats(z)
        ys = _floats(labels)
        self.fits += 1
        self.n = len(zs)
        if self.n == 0:
            self.a, self.b = 0.0, 1.0
            return
        ez2 = max(float(np.mean(zs * zs)), 1e-8)
        prior = 0.25 * self.prior_outcomes * np.array([1.0, ez2])
        theta = np.array([0.0, 1.0])
        centre = np.array([0.0, 1.0])
        x = np.stack([np.ones_like(zs), zs], axis=1)
        for _ in range(NEWTON_STEPS):
            p = 1.0 / (1.0 + np.exp(-np.clip(x @ theta, -30.0, 30.0)))
            grad = x.T @ (p - ys) + prior * (theta - centre)
            w = p * (1.0 - p)
            hess = (x * w[:, None]).T @ x + np.diag(prior)
            step = np.linalg.solve(hess, grad)
            theta = theta - step
            if float(np.max(np.abs(step))) < 1e-10:
                break
        if np.all(np.isfinite(theta)):
            self.a, self.b = float(theta[0]), float(theta[1])
        else:  # cannot happen with a positive prior; keep the identity rather than a broken map
            self.a, self.b = 0.0, 1.0


@dataclass(frozen=True, slots=True)
class QualitySnapshot:
    """The ensemble's answered probabilities over its recent outcomes, against the constant.

    ``log_loss_skill`` is the constant's log-loss minus the ensemble's (nats per outcome; positive
    means the ensemble beats the constant).  ``calibration_a``/``calibration_b`` are the pool's
    recalibration ``σ(a + b·z)`` in use.  Every figure is NaN without outcomes.
    """

    n: int
    log_loss: float
    constant_log_loss: float
    brier: float
    constant_brier: float
    ece: float
    calibration_a: float
    calibration_b: float

    @property
    def log_loss_skill(self) -> float:
        return self.constant_log_loss - self.log_loss

    def to_dict(self) -> dict[str, float | int]:
        return {
            "n": self.n,
            "log_loss": self.log_loss,
            "constant_log_loss": self.constant_log_loss,
            "log_loss_skill": self.log_loss_skill,
            "brier": self.brier,
            "constant_brier": self.constant_brier,
            "ece": self.ece,
            "calibration_a": self.calibration_a,
            "calibration_b": self.calibration_b,
        }


def _floats(values: Iterable[float] | FloatArray) -> FloatArray:
    """``values`` as a float64 array (an array of float64 is used as it is, not copied)."""
    if isinstance(values, np.ndarray) and values.dtype == np.float64:
        return values
    return np.fromiter(values, dtype=np.float64)


@dataclass(slots=True)
class PoolRecord:
    """One outcome of the ensemble: pooled log-odds, answered probability, base rate, label."""

    z: float
    prob: float
    base: float
    label: int


class PoolQuality:
    """The window of the ensemble's recent outcomes and the figures computed from it.

    The window is kept as four float64 columns (``z``, probability, base rate, label) in a ring
    written twice, at ``i`` and ``i + window``, so the window in time order is always one
    contiguous slice (:meth:`columns`): each outcome costs a few stores, and a refit reads the
    columns directly instead of gathering them from ``window`` objects.

    The quality figures are running sums over the window: each outcome adds its log-loss and Brier
    terms (the ensemble's and the constant's) and its reliability bin's count, probability and
    label, and takes off those of the outcome leaving the window, so :meth:`snapshot` and
    :meth:`reliability` cost a few operations per bin whatever the window.  The sums are recomputed
    exactly from the stored terms once per ``window`` outcomes, so rounding cannot accumulate.
    """

    def __init__(self, window: int, bins: int = ECE_BINS) -> None:
        self.window = window
        self.bins = bins
        self._data = np.zeros((4, 2 * window), dtype=np.float64)
        self._n = 0
        self._next = 0
        # per outcome of the window, by ring slot: (log-loss, constant log-loss, Brier, constant
        # Brier, bin, probability, label)
        self._terms: list[tuple[float, float, float, float, int, float, int]] = []
        self._since_resum = 0
        self._loss = self._constant_loss = self._brier = self._constant_brier = 0.0
        self._bin_n = [0] * bins
        self._bin_p = [0.0] * bins
        self._bin_y = [0] * bins

    def __len__(self) -> int:
        return self._n

    def add(self, record: PoolRecord) -> None:
        self.push(record.z, record.prob, record.base, record.label)

    def push(self, z: float, prob: float, base: float, label: int) -> None:
        """Add one outcome (pooled log-odds, answered probability, base rate, label 0/1)."""
        i = self._next
        j = i + self.window
        data = self._data
        data[0, i] = data[0, j] = z
        data[1, i] = data[1, j] = prob
        data[2, i] = data[2, j] = base
        data[3, i] = data[3, j] = label
        loss = binary_log_loss(prob, label)
        constant_loss = binary_log_loss(base, label)
        brier = (prob - label) ** 2
        constant_brier = (base - label) ** 2
        bins = self.bins
        k = int(prob * bins)
        if k >= bins:
            k = bins - 1
        terms = (loss, constant_loss, brier, constant_brier, k, prob, label)
        if self._n < self.window:
            self._terms.append(terms)
            self._n += 1
        else:
            old_loss, old_constant, old_brier, old_cbrier, old_k, old_p, old_y = self._terms[i]
            self._terms[i] = terms
            self._loss -= old_loss
            self._constant_loss -= old_constant
            self._brier -= old_brier
            self._constant_brier -= old_cbrier
            self._bin_n[old_k] -= 1
            self._bin_p[old_k] -= old_p
            self._bin_y[old_k] -= old_y
        self._loss += loss
        self._constant_loss += constant_loss
        self._brier += brier
        self._constant_brier += constant_brier
        self._bin_n[k] += 1
        self._bin_p[k] += prob
        self._bin_y[k] += label
        self._next = (i + 1) % self.window
        self._since_resum += 1
        if self._since_resum >= self.window:
            self._resum()

    def _resum(self) -> None:
        """The running sums recomputed exactly (:func:`math.fsum`) from the window's terms."""
        terms = self._terms
        self._loss = math.fsum([t[0] for t in terms])
        self._constant_loss = math.fsum([t[1] for t in terms])
        self._brier = math.fsum([t[2] for t in terms])
        self._constant_brier = math.fsum([t[3] for t in terms])
        bins = self.bins
        members: list[list[float]] = [[] for _ in range(bins)]
        for t in terms:
            members[t[4]].append(t[5])
        self._bin_n = [len(m) for m in members]
        self._bin_p = [math.fsum(m) for m in members]
        labels = [0] * bins
        for t in terms:
            labels[t[4]] += t[6]
        self._bin_y = labels
        self._since_resum = 0

    def columns(self) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """``(z, prob, base, label)`` of the window, oldest first (read-only views)."""
        start = 0 if self._n < self.window else self._next
        view = self._data[:, start : start + self._n]
        view.flags.writeable = False
        return view[0], view[1], view[2], view[3]

    @property
    def records(self) -> list[PoolRecord]:
        """The window as records, oldest first (built on each call: for reports, not the hot path)."""
        z, prob, base, label = self.columns()
        return [
            PoolRecord(float(zi), float(pi), float(bi), int(yi))
            for zi, pi, bi, yi in zip(z, prob, base, label, strict=True)
        ]

    def reliability(self) -> list[tuple[float, float, int]]:
        """``(mean probability, up share, outcomes)`` of each non-empty equal-width bin of the
        answered probability, lowest bin first (the reliability diagram behind the ECE)."""
        return [(p / n, y / n, n) for n, p, y in zip(self._bin_n, self._bin_p, self._bin_y, strict=True) if n]

    def snapshot(self, calibration: PoolCalibration) -> QualitySnapshot:
        n = self._n
        if n == 0:
            nan = math.nan
            return QualitySnapshot(0, nan, nan, nan, nan, nan, calibration.a, calibration.b)
        gap = math.fsum([abs(p - y) for p, y in zip(self._bin_p, self._bin_y, strict=True)])
        return QualitySnapshot(
            n=n,
            log_loss=self._loss / n,
            constant_log_loss=self._constant_loss / n,
            brier=self._brier / n,
            constant_brier=self._constant_brier / n,
            ece=gap / n,
            calibration_a=calibration.a,
            calibration_b=calibration.b,
        )
