"""Fit and choose the calibrator of a trained model from its walk-forward out-of-fold predictions.

Candidates: Platt scaling on the log-odds, beta calibration, isotonic regression and the raw
probabilities (identity), each as fitted and shrunk toward the base rate by 25 %, 50 % or 75 %,
plus the constant base rate itself.  They are compared *nested in time*: the out-of-fold
predictions are cut into chunks in time order (the walk-forward test blocks), and for every chunk
``k >= 1`` each candidate is fitted on the chunks before ``k`` only and scored (log-loss) on chunk
``k``.  The candidate with the lowest log-loss over all scored rows wins; it is then refitted on all
out-of-fold rows, with the training base rate as its constant.  A model whose probabilities cannot
beat the constant on later data therefore ships the constant (or a strong shrink toward it).

The fitted map is a :class:`model_server.calibration.Calibrator` (plain JSON, applied by every
backend at serving time).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from sklearn.isotonic import IsotonicRegression

from model_server.calibration import Calibrator, Method
from xylen.probability import LOGIT_EPS

logger = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
FIT_METHODS: Final[tuple[Method, ...]] = ("identity", "platt", "beta", "isotonic")
SHRINKS: Final[tuple[float, ...]] = (0.0, 0.25, 0.5, 0.75)
ISOTONIC_FLOOR: Final = 1e-3  # isotonic knots stay in [1e-3, 1 - 1e-3]: a bin of all-ups is not certainty
MIN_CHUNKS: Final = 3
L2: Final = 1e-4  # ridge on the slope terms of Platt/beta (per row), for separable or tiny inputs


@dataclass(frozen=True)
class CalibrationChoice:
    """The chosen calibrator and the nested out-of-fold log-loss of every candidate."""

    calibrator: Calibrator
    scores: dict[str, float]
    n_scored: int
    n_fit: int

    @property
    def name(self) -> str:
        return candidate_name(self.calibrator.method, self.calibrator.shrink)


def candidate_name(method: str, shrink: float) -> str:
    if method == "constant" or shrink == 0.0:
        return method
    return f"{method}+shrink{shrink:g}"


def log_loss(y: F64, q: F64) -> float:
    """Mean binary log-loss (natural log) of probabilities ``q`` for labels ``y``."""
    qq = np.clip(q, LOGIT_EPS, 1.0 - LOGIT_EPS)
    return float(-np.mean(y * np.log(qq) + (1.0 - y) * np.log1p(-qq)))


def _logistic_fit(features: F64, y: F64) -> F64:
    """Coefficients ``w`` (intercept last) of ``P(y=1) = sigmoid(features @ w[:-1] + w[-1])``.

    Newton-Raphson on the mean log-loss with a small ridge on the slopes; converges in a handful of
    steps for the one or two features used here.
    """
    n = len(y)
    X = np.column_stack([features, np.ones(n)])
    w = np.zeros(X.shape[1])
    ridge = np.full(X.shape[1], L2)
    ridge[-1] = 0.0
    for _ in range(100):
        z = X @ w
        q = 1.0 / (1.0 + np.exp(-np.clip(z, -40.0, 40.0)))
        grad = X.T @ (q - y) / n + ridge * w
        hess = (X * (q * (1.0 - q))[:, None]).T @ X / n + np.diag(ridge) + 1e-12 * np.eye(X.shape[1])
        step = np.linalg.solve(hess, grad)
        w -= step
        if float(np.max(np.abs(step))) < 1e-10:
            break
    return w


def fit_method(method: Method, p: npt.ArrayLike, y: npt.ArrayLike, base_rate: float) -> Calibrator:
    """Fit one calibration ``method`` on raw probabilities ``p`` and labels ``y`` (no shrink)."""
    pp = np.clip(np.asarray(p, dtype=np.float64), LOGIT_EPS, 1.0 - LOGIT_EPS)
    yy = np.asarray(y, dtype=np.float64)
    base_rate = float(np.clip(base_rate, 1e-6, 1.0 - 1e-6))
    if method in ("identity", "constant"):
        return Calibrator(method=method, base_rate=base_rate)
    if method == "platt":
        w = _logistic_fit(np.log(pp / (1.0 - pp))[:, None], yy)
        return Calibrator(method="platt", base_rate=base_rate, coef=(float(w[0]), float(w[1])))
    if method == "beta":
        w = _logistic_fit(np.column_stack([np.log(pp), -np.log1p(-pp)]), yy)
        a, b, c = (float(v) for v in w)
        if a < 0 or b < 0:  # beta calibration's monotone form: refit the offending term out
            keep = 0 if b < 0 else 1
            feats = np.log(pp) if keep == 0 else -np.log1p(-pp)
            w1 = _logistic_fit(feats[:, None], yy)
            slope = max(float(w1[0]), 0.0)
            a, b, c = (slope, 0.0, float(w1[1])) if keep == 0 else (0.0, slope, float(w1[1]))
        return Calibrator(method="beta", base_rate=base_rate, coef=(a, b, c))
    iso = IsotonicRegression(y_min=ISOTONIC_FLOOR, y_max=1.0 - ISOTONIC_FLOOR, out_of_bounds="clip")
    iso.fit(pp, yy)
    xs = np.asarray(iso.X_thresholds_, dtype=np.float64)
    ys = np.asarray(iso.y_thresholds_, dtype=np.float64)
    xs, first = np.unique(xs, return_index=True)  # strictly increasing knots
    ys = np.maximum.accumulate(ys[first])
    return Calibrator(
        method="isotonic", base_rate=base_rate, x=tuple(float(v) for v in xs), y=tuple(float(v) for v in ys)
    )


def _with_shrink(cal: Calibrator, shrink: float) -> Calibrator:
    return Calibrator(cal.method, cal.base_rate, shrink, cal.coef, cal.x, cal.y)


def time_chunks(groups: npt.ArrayLike | None, n: int, min_chunks: int = MIN_CHUNKS) -> npt.NDArray[np.int64]:
    """Chunk number of each out-of-fold row (rows in time order).

    The walk-forward fold of each row when there are at least ``min_chunks`` folds; otherwise
    ``min_chunks + 1`` equal chunks of the rows in time order.
    """
    if groups is not None:
        g = np.asarray(groups)
        values = np.unique(g)
        if len(values) >= min_chunks:
            out: npt.NDArray[np.int64] = np.searchsorted(values, g).astype(np.int64)
            return out
    k = min_chunks + 1
    even: npt.NDArray[np.int64] = np.minimum(np.arange(n) * k // max(n, 1), k - 1).astype(np.int64)
    return even


def select_calibrator(
    p: npt.ArrayLike,
    y: npt.ArrayLike,
    base_rate: float,
    groups: npt.ArrayLike | None = None,
    methods: Sequence[Method] = FIT_METHODS,
    shrinks: Sequence[float] = SHRINKS,
) -> CalibrationChoice:
    """Choose and fit the calibrator of out-of-fold probabilities ``p`` (rows in time order).

    ``groups`` gives each row's walk-forward fold (see :func:`time_chunks`); ``base_rate`` is the
    up share of the training rows, the constant the final calibrator shrinks toward.
    """
    pp = np.asarray(p, dtype=np.float64)
    yy = np.asarray(y, dtype=np.float64)
    if len(pp) != len(yy) or len(pp) == 0:
        raise ValueError(f"{len(pp)} probabilities for {len(yy)} labels")
    chunk = time_chunks(groups, len(pp))
    if np.any(np.diff(chunk) < 0):
        raise ValueError("out-of-fold rows must be in time order (chunks non-decreasing)")
    names = ["constant"] + [candidate_name(m, s) for m in methods for s in shrinks]
    losses = {name: 0.0 for name in names}
    scored = 0
    for k in range(1, int(chunk.max()) + 1):
        fit = chunk < k
        test = chunk == k
        if not test.any() or len(np.unique(yy[fit])) < 2:
            continue
        rate = float(yy[fit].mean())
        y_test = yy[test]
        losses["constant"] += log_loss(y_test, np.full(len(y_test), rate)) * len(y_test)
        for method in methods:
            fitted = fit_method(method, pp[fit], yy[fit], rate)
            raw = fitted.apply(pp[test])
            for s in shrinks:
                q = (1.0 - s) * raw + s * rate
                losses[candidate_name(method, s)] += log_loss(y_test, q) * len(y_test)
        scored += int(test.sum())
    if scored == 0:
        cal = Calibrator(method="constant", base_rate=float(np.clip(base_rate, 1e-6, 1 - 1e-6)))
        return CalibrationChoice(cal, {}, 0, len(pp))
    scores = {name: total / scored for name, total in losses.items()}
    best = min(names, key=lambda name: (round(scores[name], 12), names.index(name)))
    if best == "constant":
        cal = fit_method("constant", pp, yy, base_rate)
    else:
        method_name, _, shrink_text = best.partition("+shrink")
        shrink = float(shrink_text) if shrink_text else 0.0
        chosen: Method = next(m for m in methods if m == method_name)
        cal = _with_shrink(fit_method(chosen, pp, yy, base_rate), shrink)
    info = {
        "chosen": best,
        "nested_oof_log_loss": {k: round(v, 7) for k, v in scores.items() if math.isfinite(v)},
        "rows_scored": scored,
        "rows_fitted": len(pp),
    }
    cal = Calibrator(cal.method, cal.base_rate, cal.shrink, cal.coef, cal.x, cal.y, info)
    logger.info(
        "calibration: %s (nested OOF log-loss %.5f, constant %.5f, raw %.5f over %d rows)",
        best,
        scores[best],
        scores["constant"],
        scores.get("identity", float("nan")),
        scored,
    )
    return CalibrationChoice(cal, scores, scored, len(pp))
