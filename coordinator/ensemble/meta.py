"""The optional meta-learner: a small LightGBM stacker, used only while it beats log-odds averaging.

Features of one heartbeat (:func:`meta_features`): the calibrated probability of each model in a fixed
list (NaN when it did not vote), the weighted log-odds average, the disagreement, the number of
votes, ATR in bps and funding in bps.  Rows are logged at :meth:`Ensemble.observe` time with the
calibrators and weights of that moment (fitted on earlier outcomes only), together with the log-odds
probability the ensemble had, so the comparison is out of time.

Walk-forward evaluation on each refit: the candidate is trained on the older part of the logged rows
and scored on the most recent ``HOLDOUT_FRACTION``; it becomes (or stays) active only when its
holdout log-loss is strictly below the log-odds baseline's on the same rows, else the meta-learner is
switched off until a later refit wins.  The booster kept is the last one evaluated (used only while
``active``); it is stored as LightGBM model text.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
from numpy.typing import NDArray

from coordinator.ensemble.calibration import EPS, log_loss

HOLDOUT_FRACTION = 0.25
EXTRA_FEATURES = ("log_odds_prob", "disagreement", "n_votes", "atr_bps", "funding_bps")

PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 7,
    "min_data_in_leaf": 50,
    "feature_fraction": 1.0,
    "bagging_fraction": 1.0,
    "lambda_l2": 1.0,
    "num_threads": 2,
    "deterministic": True,
    "seed": 7,
    "verbose": -1,
}
NUM_ROUNDS = 60


def meta_features(
    model_ids: Sequence[str],
    calibrated: Mapping[str, float],
    log_odds_prob: float,
    disagreement: float,
    atr_bps: float,
    funding_rate: float,
) -> list[float]:
    """One feature row in the order ``model_ids`` + :data:`EXTRA_FEATURES`."""
    row = [calibrated.get(m, math.nan) for m in model_ids]
    row += [log_odds_prob, disagreement, float(len(calibrated)), atr_bps, funding_rate * 1e4]
    return row


@dataclass(frozen=True, slots=True)
class MetaEvaluation:
    """The result of one walk-forward evaluation."""

    active: bool
    meta_logloss: float
    baseline_logloss: float
    n_train: int
    n_holdout: int


@dataclass(slots=True)
class MetaLearner:
    """The stacker's state: booster (as text), its feature layout and whether it is in use."""

    model_ids: tuple[str, ...] = ()
    model_text: str | None = None
    active: bool = False
    last_refit_ms: int | None = None
    evaluation: MetaEvaluation | None = None
    _booster: lgb.Booster | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.model_text is not None and self._booster is None:
            self._booster = lgb.Booster(model_str=self.model_text)

    def predict(self, row: Sequence[float]) -> float:
        """P(up) for one feature row; requires a fitted booster."""
        if self._booster is None:
            raise RuntimeError("meta-learner has no fitted model")
        out = self._booster.predict(np.asarray([row], dtype=np.float64), num_threads=1)
        return float(np.clip(np.asarray(out)[0], EPS, 1.0 - EPS))

    def refit(
        self,
        model_ids: Sequence[str],
        rows: Sequence[Sequence[float]],
        baseline: Sequence[float],
        labels: Sequence[int],
        now_ms: int,
    ) -> MetaEvaluation | None:
        """Walk-forward refit (see the module docstring).  None when there is too little data."""
        self.last_refit_ms = now_ms
        n = len(rows)
        n_hold = int(n * HOLDOUT_FRACTION)
        if n_hold < 50 or n - n_hold < 100:
            return None
        x: NDArray[np.float64] = np.asarray(rows, dtype=np.float64)
        y: NDArray[np.float64] = np.asarray(labels, dtype=np.float64)
        base: NDArray[np.float64] = np.asarray(baseline, dtype=np.float64)
        x_fit, y_fit = x[:-n_hold], y[:-n_hold]
        if y_fit.min() == y_fit.max():
            return None
        names = [f"p_{i}" for i in range(len(model_ids))] + list(EXTRA_FEATURES)
        data = lgb.Dataset(x_fit, label=y_fit, feature_name=names, free_raw_data=True)
        booster = lgb.train(PARAMS, data, num_boost_round=NUM_ROUNDS)
        pred = np.asarray(booster.predict(x[-n_hold:], num_threads=1), dtype=np.float64)
        meta_ll = log_loss(pred, y[-n_hold:])
        base_ll = log_loss(base[-n_hold:], y[-n_hold:])
        evaluation = MetaEvaluation(meta_ll < base_ll, meta_ll, base_ll, n - n_hold, n_hold)
        self.evaluation = evaluation
        self.model_ids = tuple(model_ids)
        self.model_text = booster.model_to_string()
        self._booster = lgb.Booster(model_str=self.model_text)
        self.active = evaluation.active
        return evaluation


@dataclass(frozen=True, slots=True)
class MetaRow:
    """One logged training row: the heartbeat's calibrated votes and context, and its label."""

    outcome_ms: int
    calibrated: Mapping[str, float]
    log_odds_prob: float
    disagreement: float
    atr_bps: float
    funding_rate: float
    label: int

    def features(self, model_ids: Sequence[str]) -> list[float]:
        return meta_features(
            model_ids, self.calibrated, self.log_odds_prob, self.disagreement, self.atr_bps, self.funding_rate
        )
