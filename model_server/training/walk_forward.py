"""Walk-forward validation with a purge gap and an embargo, and the per-fold metrics.

Layout (bar numbers = time / step, so dropped hold-band rows and candle gaps do not shift it): the
span is cut into ``n_folds + 1`` equal blocks; block 0 only trains, and fold ``k`` tests on block
``k`` with a model fitted on the bars before it (expanding window, optionally capped by
``max_train_bars``)::

    train [train_start, test_start - purge - embargo)  | gap |  test [test_start, test_end)

* **purge** (>= the label horizon): a training row ``t`` has a label that reads closes up to
  ``t + h``; with ``t < test_start - purge`` that window ends before the test block, so no test
  price ever enters a training label.
* **embargo**: extra bars dropped on top of the purge, for the serial correlation of features
  (long look-backs) and of overlapping labels around the boundary.

Training rows always precede the test block, test blocks never overlap, and the model of a fold
never sees its own test rows; the metrics are therefore out-of-fold.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

from model_server.training.dataset import Dataset

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
CONFIDENT_MARGIN: Final = 0.05  # a "confident call": |p - 0.5| > 0.05
ECE_BINS: Final = 15


@dataclass(frozen=True)
class Fold:
    """Bar ranges (half-open) of one walk-forward fold."""

    index: int
    train_start: int
    train_end: int
    test_start: int
    test_end: int


@dataclass(frozen=True)
class FoldMetrics:
    """Out-of-fold scores of one fold (or of all folds pooled)."""

    fold: str
    n_train: int
    n_test: int
    up_share: float
    auc: float
    log_loss: float
    brier: float
    ece: float
    confident_n: int
    confident_hit_rate: float


@dataclass(frozen=True)
class WalkForwardResult:
    folds: list[FoldMetrics]
    pooled: FoldMetrics
    oof_index: npt.NDArray[np.int64]  # dataset rows that were scored, in time order
    oof_proba: F64
    oof_fold: npt.NDArray[np.int64]  # the walk-forward fold that scored each of those rows

    @property
    def mean_log_loss(self) -> float:
        return float(np.mean([f.log_loss for f in self.folds]))

    def summary(self) -> dict[str, float]:
        """Flat, finite metrics for ``metadata.json`` (means over folds and the pooled OOF scores)."""
        out: dict[str, float] = {"wf_folds": float(len(self.folds))}
        for key in ("auc", "log_loss", "brier", "ece", "confident_hit_rate"):
            out[f"wf_mean_{key}"] = float(np.nanmean([getattr(f, key) for f in self.folds]))
        for key, value in asdict(self.pooled).items():
            if key != "fold":
                out[f"oof_{key}"] = float(value)
        for f in self.folds:
            out[f"fold{f.fold}_auc"] = f.auc
            out[f"fold{f.fold}_log_loss"] = f.log_loss
        return {k: v for k, v in out.items() if math.isfinite(v)}


def make_folds(
    n_bars: int,
    n_folds: int,
    purge_bars: int,
    embargo_bars: int = 0,
    max_train_bars: int | None = None,
) -> list[Fold]:
    """Walk-forward folds over bars ``0 .. n_bars - 1`` (see the module docstring).

    Folds whose training range would be empty are skipped; ``ValueError`` if none is left.
    """
    if n_folds < 1 or purge_bars < 0 or embargo_bars < 0:
        raise ValueError("n_folds must be >= 1, purge and embargo >= 0")
    block = n_bars // (n_folds + 1)
    if block < 1:
        raise ValueError(f"{n_bars} bars are too few for {n_folds} folds")
    folds: list[Fold] = []
    for k in range(1, n_folds + 1):
        test_start = k * block
        test_end = n_bars if k == n_folds else (k + 1) * block
        train_end = test_start - purge_bars - embargo_bars
        train_start = 0 if max_train_bars is None else max(0, train_end - max_train_bars)
        if train_end <= train_start:
            continue
        folds.append(Fold(len(folds), train_start, train_end, test_start, test_end))
    if not folds:
        raise ValueError(
            f"no fold has training data ({n_bars} bars, purge {purge_bars}, embargo {embargo_bars})"
        )
    return folds


def expected_calibration_error(y: npt.ArrayLike, p: npt.ArrayLike, bins: int = ECE_BINS) -> float:
    """Share-weighted mean |mean(p) - mean(y)| over ``bins`` equal-width probability bins."""
    yy, pp = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    which = np.minimum((pp * bins).astype(np.int64), bins - 1)
    total = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            total += abs(float(pp[sel].mean()) - float(yy[sel].mean())) * int(sel.sum())
    return total / max(len(pp), 1)


def score(name: str, y: npt.ArrayLike, p: npt.ArrayLike, n_train: int = 0) -> FoldMetrics:
    """AUC, log-loss, Brier, ECE and the hit rate of confident calls of probabilities ``p``."""
    yy, pp = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    two_classes = len(np.unique(yy)) == 2
    confident = np.abs(pp - 0.5) > CONFIDENT_MARGIN
    hits = (pp[confident] > 0.5) == (yy[confident] > 0.5)
    return FoldMetrics(
        fold=name,
        n_train=n_train,
        n_test=len(yy),
        up_share=float(yy.mean()) if len(yy) else float("nan"),
        auc=float(roc_auc_score(yy, pp)) if two_classes else float("nan"),
        log_loss=float(log_loss(yy, np.clip(pp, 1e-15, 1 - 1e-15), labels=[0.0, 1.0])),
        brier=float(brier_score_loss(yy, pp)),
        ece=expected_calibration_error(yy, pp),
        confident_n=int(confident.sum()),
        confident_hit_rate=float(hits.mean()) if len(hits) else float("nan"),
    )


def fit_booster(
    X: F32,
    y: F32,
    params: Mapping[str, Any],
    num_boost_round: int,
    feature_names: Sequence[str] | None = None,
) -> lgb.Booster:
    """Fit a LightGBM binary classifier (raw data freed once binned)."""
    data = lgb.Dataset(
        X,
        label=y,
        feature_name=list(feature_names) if feature_names is not None else "auto",
        params={"max_bin": params.get("max_bin", 255), "verbose": -1},
        free_raw_data=True,
    )
    return lgb.train(dict(params), data, num_boost_round=num_boost_round)


BoosterFit = Callable[[Dataset, npt.NDArray[np.int64], Mapping[str, Any], int], lgb.Booster]
"""Fits a booster on the dataset rows given (e.g. across a Dask cluster) instead of :func:`fit_booster`."""


def walk_forward(
    ds: Dataset,
    params: Mapping[str, Any],
    num_boost_round: int,
    folds: Sequence[Fold],
    fit: BoosterFit | None = None,
) -> WalkForwardResult:
    """Fit one model per fold on its training bars (with ``fit`` when given) and score it on its
    test bars."""
    metrics: list[FoldMetrics] = []
    idx_parts: list[npt.NDArray[np.int64]] = []
    proba_parts: list[F64] = []
    fold_parts: list[npt.NDArray[np.int64]] = []
    for fold in folds:
        train = np.flatnonzero((ds.bar >= fold.train_start) & (ds.bar < fold.train_end))
        test = np.flatnonzero((ds.bar >= fold.test_start) & (ds.bar < fold.test_end))
        if len(train) == 0 or len(test) == 0 or len(np.unique(ds.y[train])) < 2:
            logger.warning("fold %d skipped: %d train / %d test rows", fold.index, len(train), len(test))
            continue
        if fit is None:
            booster = fit_booster(ds.X[train], ds.y[train], params, num_boost_round)
        else:
            booster = fit(ds, train, params, num_boost_round)
        proba = np.asarray(booster.predict(ds.X[test]), dtype=np.float64)
        m = score(str(fold.index), ds.y[test], proba, n_train=len(train))
        logger.debug("fold %d: %s", fold.index, m)
        metrics.append(m)
        idx_parts.append(test)
        proba_parts.append(proba)
        fold_parts.append(np.full(len(test), fold.index, dtype=np.int64))
    if not metrics:
        raise ValueError("walk-forward produced no scored fold")
    oof_index = np.concatenate(idx_parts)
    oof_proba = np.concatenate(proba_parts)
    pooled = score("all", ds.y[oof_index], oof_proba, n_train=0)
    return WalkForwardResult(metrics, pooled, oof_index, oof_proba, np.concatenate(fold_parts))


def format_table(result: WalkForwardResult) -> str:
    """The per-fold table printed by ``xylen train``."""
    head = (
        f"{'fold':>5} {'train':>8} {'test':>7} {'up%':>6} {'AUC':>7} {'logloss':>8} {'Brier':>7} "
        f"{'ECE':>7} {'conf_n':>7} {'conf_hit':>8}"
    )
    lines = [head, "-" * len(head)]
    for m in [*result.folds, result.pooled]:
        if m.fold == "all":
            lines.append("-" * len(head))
        lines.append(
            f"{m.fold:>5} {m.n_train if m.n_train else '':>8} {m.n_test:>7} {100 * m.up_share:>6.1f} "
            f"{m.auc:>7.4f} {m.log_loss:>8.4f} {m.brier:>7.4f} {m.ece:>7.4f} {m.confident_n:>7} "
            f"{m.confident_hit_rate:>8.4f}"
        )
    return "\n".join(lines)
