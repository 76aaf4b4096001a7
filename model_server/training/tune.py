"""Optuna search of LightGBM parameters on the walk-forward score (mean out-of-fold log-loss).

The sampler is seeded (TPE, ``seed``), each trial runs the same folds as the final report, and no
trial ever looks at a fold's test rows while fitting; the score is the mean of the folds' test
log-loss.  Threads, ``max_bin`` and the row limit stay those of the profile (they are resource
limits, not model choices).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna

from model_server.training.dataset import Dataset
from model_server.training.walk_forward import Fold, walk_forward

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TuneResult:
    best_params: dict[str, Any]  # LightGBM parameters + "num_boost_round"
    best_value: float  # mean out-of-fold log-loss of the best trial
    n_trials: int


def suggest(trial: optuna.Trial) -> dict[str, Any]:
    """The search space."""
    return {
        "num_leaves": trial.suggest_int("num_leaves", 7, 63, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.1, log=True),
        "min_data_in_leaf": trial.suggest_int("min_data_in_leaf", 50, 2000, log=True),
        "feature_fraction": trial.suggest_float("feature_fraction", 0.4, 1.0),
        "bagging_fraction": trial.suggest_float("bagging_fraction", 0.4, 1.0),
        "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 30.0, log=True),
        "num_boost_round": trial.suggest_int("num_boost_round", 50, 400, step=25),
    }


def tune(
    ds: Dataset,
    folds: Sequence[Fold],
    base_params: Mapping[str, Any],
    n_trials: int,
    seed: int = 42,
) -> TuneResult:
    """Run ``n_trials`` seeded TPE trials and return the best parameters."""
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial: optuna.Trial) -> float:
        chosen = suggest(trial)
        rounds = int(chosen.pop("num_boost_round"))
        params = {**base_params, **chosen, "bagging_freq": 1}
        value = walk_forward(ds, params, rounds, folds).mean_log_loss
        logger.info("trial %d: mean OOF log-loss %.5f %s", trial.number, value, trial.params)
        return value

    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=n_trials)
    best = dict(study.best_params)
    logger.info("best of %d trials: %.5f %s", n_trials, study.best_value, best)
    return TuneResult(best_params=best, best_value=float(study.best_value), n_trials=n_trials)
