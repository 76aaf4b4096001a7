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

The fit reads the whole window, so the ensemble runs it every ``pool_refit_every`` outcomes only;
in between, :meth:`PoolCalibration.track` follows the optimum as the window changes by one outcome in
and one out: one Newton step from the map in use, on the gradient of those two outcomes alone and the
Hessian of the last fit updated by them (the window's other outcomes' gradient sums to about zero
at the optimum), a few float operations.  The next scheduled fit replaces the tracked map.

:class:`PoolQuality` keeps the ensemble's answered probability, the base rate and the label of the
most recent outcomes and reports log-loss, Brier and ECE (15 equal-width bins) of the ensemble next
to the constant's log-loss and Brier on the same outcomes, from running sums over the window.
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
_UNIT = 2**60
"""The quality figures' running sums are integers in units of ``1 / _UNIT``."""


@dataclass(slots=True)
class PoolCalibration:
    """``p = σ(a + b·z)`` fitted by penalised maximum likelihood on a window of ``(z, label)``."""

    prior_outcomes: float
    a: float = 0.0
    b: float = 1.0
    n: int = 0
    fits: int = 0
    """How many times :meth:`fit` has run (the refit schedule is checked against it)."""
    # the objective's Hessian at the map in use: the window's part (Σ w·[1, z; z, z²], w = p(1-p))
    # and the prior's diagonal, as the last fit left them and :meth:`track` updates them
    h00: float = 0.0
    h01: float = 0.0
    h11: float = 0.0
    prior_a: float = 0.0
    prior_b: float = 0.0

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
            self.h00 = self.h01 = self.h11 = self.prior_a = self.prior_b = 0.0
            return
        ez2 = max(float(np.mean(zs * zs)), 1e-8)
        prior = 0.25 * self.prior_outcomes * np.array([1.0, ez2])
        theta = np.array([0.0, 1.0])
        centre = np.array([0.0, 1.0])
        x = np.stack([np.ones_like(zs), zs], axis=1)
        data_hess = np.zeros((2, 2))
        for _ in range(NEWTON_STEPS):
            p = 1.0 / (1.0 + np.exp(-np.clip(x @ theta, -30.0, 30.0)))
            grad = x.T @ (p - ys) + prior * (theta - centre)
            w = p * (1.0 - p)
            data_hess = (x * w[:, None]).T @ x
            hess = data_hess + np.diag(prior)
            step = np.linalg.solve(hess, grad)
            theta = theta - step
            if float(np.max(np.abs(step))) < 1e-10:
                break
        self.prior_a, self.prior_b = float(prior[0]), float(prior[1])
        self.h00, self.h01, self.h11 = (float(v) for v in (data_hess[0, 0], data_hess[0, 1], data_hess[1, 1]))
        if np.all(np.isfinite(theta)):
            self.a, self.b = float(theta[0]), float(theta[1])
        else:  # cannot happen with a positive prior; keep the identity rather than a broken map
            self.a, self.b = 0.0, 1.0

    def track(self, z_in: float, y_in: int, left: tuple[float, int] | None, mean_z2: float) -> None:
        """Follow the optimum as outcome ``(z_in, y_in)`` joins the window and ``left`` (``(z, label)``
        or None) leaves it, ``mean_z2`` being the window's new ``E[z²]``: one Newton step on those two
        outcomes' gradient and the prior's change, with their curvature added to and taken from the
        Hessian."""
        a, b = self.a, self.b
        prior_b = 0.25 * self.prior_outcomes * max(mean_z2, 1e-8)
        p = sigmoid(max(-30.0, min(30.0, a + b * z_in)))
        r = p - y_in
        w = p * (1.0 - p)
        g0, g1 = r, r * z_in + (prior_b - self.prior_b) * (b - 1.0)
        h00, h01, h11 = self.h00 + w, self.h01 + w * z_in, self.h11 + w * z_in * z_in
        if left is not None:
            z_out, y_out = left
            p = sigmoid(max(-30.0, min(30.0, a + b * z_out)))
            r = p - y_out
            w = p * (1.0 - p)
            g0 -= r
            g1 -= r * z_out
            h00, h01, h11 = h00 - w, h01 - w * z_out, h11 - w * z_out * z_out
        else:
            self.n += 1
        self.h00, self.h01, self.h11 = h00, h01, h11
        self.prior_a, self.prior_b = 0.25 * self.prior_outcomes, prior_b
        k00, k11 = h00 + self.prior_a, h11 + prior_b
        det = k00 * k11 - h01 * h01
        if not det > 0.0:  # cannot happen with a positive prior; keep the map in use
            return
        a -= (k11 * g0 - h01 * g1) / det
        b -= (k00 * g1 - h01 * g0) / det
        if math.isfinite(a) and math.isfinite(b):
            self.a, self.b = a, b


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
    :meth:`reliability` cost a few operations per bin whatever the window.  The terms are summed as
    integers in units of ``2**-60`` (exact, so the sums depend on the window's content only, not on
    the order of additions: no rounding accumulates, and a restart rebuilding the window from the
    store gets the same figures); each term is off by less than ``2**-60`` from its float.
    """

    def __init__(self, window: int, bins: int = ECE_BINS) -> None:
        self.window = window
        self.bins = bins
        self._data = np.zeros((4, 2 * window), dtype=np.float64)
        self._n = 0
        self._next = 0
        # per outcome of the window, by ring slot: (z, label, bin, and as integers: log-loss,
        # constant log-loss, Brier, constant Brier, probability, z²)
        self._terms: list[tuple[float, int, int, int, int, int, int, int, int]] = []
        self._loss = self._constant_loss = self._brier = self._constant_brier = self._z2 = 0
        self._bin_n = [0] * bins
        self._bin_p = [0] * bins
        self._bin_y = [0] * bins

    def __len__(self) -> int:
        return self._n

    def add(self, record: PoolRecord) -> None:
        self.push(record.z, record.prob, record.base, record.label)

    def push(self, z: float, prob: float, base: float, label: int) -> tuple[float, int] | None:
        """Add one outcome (pooled log-odds, answered probability, base rate, label 0/1); returns
        ``(z, label)`` of the outcome that left the window (None while it is filling)."""
        i = self._next
        j = i + self.window
        data = self._data
        data[0, i] = data[0, j] = z
        data[1, i] = data[1, j] = prob
        data[2, i] = data[2, j] = base
        data[3, i] = data[3, j] = label
        loss = int(binary_log_loss(prob, label) * _UNIT)
        constant_loss = int(binary_log_loss(base, label) * _UNIT)
        brier = int((prob - label) ** 2 * _UNIT)
        constant_brier = int((base - label) ** 2 * _UNIT)
        p = int(prob * _UNIT)
        z2 = int(z * z * _UNIT)
        bins = self.bins
        k = int(prob * bins)
        if k >= bins:
            k = bins - 1
        terms = (z, label, k, loss, constant_loss, brier, constant_brier, p, z2)
        left: tuple[float, int] | None = None
        if self._n < self.window:
            self._terms.append(terms)
            self._n += 1
        else:
            old_z, old_y, old_k, old_loss, old_constant, old_brier, old_cbrier, old_p, old_z2 = self._terms[i]
            self._terms[i] = terms
            left = (old_z, old_y)
            self._loss -= old_loss
            self._constant_loss -= old_constant
            self._brier -= old_brier
            self._constant_brier -= old_cbrier
            self._z2 -= old_z2
            self._bin_n[old_k] -= 1
            self._bin_p[old_k] -= old_p
            self._bin_y[old_k] -= old_y
        self._loss += loss
        self._constant_loss += constant_loss
        self._brier += brier
        self._constant_brier += constant_brier
        self._z2 += z2
        self._bin_n[k] += 1
        self._bin_p[k] += p
        self._bin_y[k] += label
        self._next = (i + 1) % self.window
        return left

    def mean_z2(self) -> float:
        """``E[z²]`` over the window (0 when empty)."""
        return self._z2 / _UNIT / self._n if self._n else 0.0

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
        return [
            (p / _UNIT / n, y / n, n)
            for n, p, y in zip(self._bin_n, self._bin_p, self._bin_y, strict=True)
            if n
        ]

    def snapshot(self, calibration: PoolCalibration) -> QualitySnapshot:
        n = self._n
        if n == 0:
            nan = math.nan
            return QualitySnapshot(0, nan, nan, nan, nan, nan, calibration.a, calibration.b)
        gap = sum(abs(p - y * _UNIT) for p, y in zip(self._bin_p, self._bin_y, strict=True))
        return QualitySnapshot(
            n=n,
            log_loss=self._loss / _UNIT / n,
            constant_log_loss=self._constant_loss / _UNIT / n,
            brier=self._brier / _UNIT / n,
            constant_brier=self._constant_brier / _UNIT / n,
            ece=gap / _UNIT / n,
            calibration_a=calibration.a,
            calibration_b=calibration.b,
        )
