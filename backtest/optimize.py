"""Parameter search with Optuna over the ensemble's and the risk manager's settings, scored on
backtest windows the models never trained on.

The span ``start..end`` is split in two: the **in-sample** part (the first ``1 - holdout`` of it),
cut into ``windows`` consecutive windows, and the **out-of-sample** part (the last ``holdout``).
The models' votes are computed once: from models trained before the span (the default) or
walk-forward models retrained every ``retrain_every`` on the candles before each retraining
(:func:`backtest.votes.walk_forward_models`); either way no window is scored with a model that
saw its candles.  A trial sets the parameters of :data:`SPACE` in the config, runs the backtest on
each in-sample window (a fresh account each) and scores the mean of the windows' objective.  The
out-of-sample part is never seen by the search: the report runs the best trials on it and shows
its figures next to the in-sample ones, with the parameter importances
(:func:`optuna.importance.get_param_importances`, fANOVA).

Studies live in an Optuna RDB storage, so several processes (or hosts, with a database server)
work on one study by giving the same storage URL and study name; a study records the settings it
was created with (span, symbol, objective, windows) and a worker with other settings is refused.
Votes are cached next to a SQLite study (one file per settings, written once under a file lock),
so workers on one host train the models once.

Cost: a trial runs ``(1 - holdout) x span`` candles through the backtest (about 2,000-2,800
candles/s on the 2-core machine), so a trial over 30 days of 5m candles (8,640 candles) takes a few
seconds; 100 trials take a few minutes with two workers on two cores.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import math
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import optuna
import pandas as pd
import sqlalchemy.exc

from backtest import metrics
from backtest.data import MarketHistory, history_of
from backtest.engine import RunOptions, run_backtest
from backtest.result import BacktestResult
from backtest.runlog import RunLog
from backtest.votes import ModelVotes, VoteBook
from xylen.config.loader import parse_config
from xylen.config.schema import XylenConfig
from xylen.errors import UsageError

OBJECTIVES: Final = {
    "sharpe": "maximize",
    "calmar": "maximize",
    "profit_factor": "maximize",
    "log_loss": "minimize",
}
DAY_MS: Final = metrics.DAY_MS
PROFIT_FACTOR_CAP: Final = 10.0  # a window with winners only scores this, not inf
FIGURES: Final = ("sharpe", "calmar", "profit_factor", "log_loss", "total_return", "max_drawdown", "trades")


@dataclass(frozen=True)
class Param:
    """One searched setting: ``section.key`` of the config and its range."""

    key: str
    low: float
    high: float
    log: bool = False
    choices: tuple[str, ...] = ()

    def suggest(self, trial: optuna.Trial) -> float | str:
        if self.choices:
            return str(trial.suggest_categorical(self.key, list(self.choices)))
        return float(trial.suggest_float(self.key, self.low, self.high, log=self.log))


SPACE: Final = (
    Param("ensemble.min_edge", 0.0, 0.08),
    Param("ensemble.max_disagreement", 0.05, 0.5),
    Param("ensemble.uncalibrated_shrink", 0.0, 1.0),
    Param("ensemble.weight_half_life_hours", 6.0, 336.0, log=True),
    Param("trading.stop_atr_multiple", 0.5, 4.0),
    Param("trading.take_profit_atr_multiple", 0.5, 6.0),
    Param("risk.sizing", 0, 0, choices=("fixed_fraction", "kelly")),
    Param("risk.fixed_fraction", 0.002, 0.05, log=True),
    Param("risk.kelly_fraction", 0.05, 0.5),
    Param("risk.max_position_fraction", 0.02, 0.3),
)
"""What a trial sets.  Both sizing fractions are always drawn (one is unused by the chosen sizing),
so every trial has every parameter and the importances compare like with like."""


def apply_params(config: XylenConfig, params: Mapping[str, Any]) -> XylenConfig:
    """``config`` with ``params`` (``section.key`` -> value) set, validated as a config file is."""
    data = config.model_dump(mode="json")
    for dotted, value in params.items():
        section, _, key = dotted.partition(".")
        if section not in data or not isinstance(data[section], dict) or key not in data[section]:
            raise UsageError(f"parameter {dotted!r}: no such config key")
        data[section][key] = value
    return parse_config(data, "optimize trial")


# ------------------------------------------------------------------------------------ windows


@dataclass(frozen=True)
class Plan:
    """The span's windows: in-sample windows scored by the search, the out-of-sample part after them."""

    in_sample: tuple[tuple[int, int], ...]  # (start ms, end ms) of each window
    out_of_sample: tuple[int, int] | None


def plan_windows(start_ms: int, end_ms: int, step_ms: int, windows: int, holdout: float) -> Plan:
    """Split ``start..end`` (candle-aligned) into ``windows`` in-sample windows and the holdout."""
    if windows < 1:
        raise UsageError(f"--windows {windows}: must be 1 or more")
    if not 0.0 <= holdout < 1.0:
        raise UsageError(f"--holdout {holdout}: must be at least 0 and below 1")
    candles = (end_ms - start_ms) // step_ms
    oos = round(candles * holdout)
    ins = candles - oos
    if ins < 2 * windows or (holdout > 0 and oos < 2):
        raise UsageError(f"span of {candles} candles too short for {windows} window(s) and holdout {holdout}")
    edges = [start_ms + (ins * k // windows) * step_ms for k in range(windows + 1)]
    in_sample = tuple((edges[k], edges[k + 1]) for k in range(windows))
    out = (edges[-1], start_ms + candles * step_ms) if oos else None
    return Plan(in_sample, out)


def window_book(full: MarketHistory, models: Sequence[ModelVotes], window: MarketHistory) -> VoteBook:
    """The votes of ``models`` (rows of ``full``) for the rows of ``window`` (a part of ``full``)."""
    offset = int(np.searchsorted(full.open_time, int(window.open_time[0])))
    size = len(window.candles)
    if not np.array_equal(full.open_time[offset : offset + size], window.open_time):
        raise RuntimeError("window rows are not rows of the full history")
    return VoteBook(
        [
            dataclasses.replace(
                m, probs=m.probs[offset : offset + size], versions=m.versions[offset : offset + size]
            )
            for m in models
        ]
    )


@dataclass
class Market:
    """The data a study runs on: the candles, the span's history and the models' votes over it."""

    candles: pd.DataFrame
    full: MarketHistory
    models: list[ModelVotes]
    plan: Plan

    def window(self, start_ms: int, end_ms: int) -> tuple[MarketHistory, VoteBook]:
        h = self.full
        part = history_of(self.candles, h.symbol, start_ms, end_ms, interval=h.interval, funding=h.funding)
        return part, window_book(h, self.models, part)


# ------------------------------------------------------------------------------------ scoring


def log_loss(decisions: pd.DataFrame) -> float:
    """The ensemble's log-loss over the labelled decisions (NaN when none)."""
    p = decisions["probability"].to_numpy(np.float64)
    y = decisions["outcome"].to_numpy(np.float64)
    ok = np.isfinite(p) & np.isfinite(y)
    if not ok.any():
        return math.nan
    q = np.clip(p[ok], 1e-6, 1 - 1e-6)
    return float(-np.mean(y[ok] * np.log(q) + (1 - y[ok]) * np.log(1 - q)))


def figures(result: BacktestResult) -> dict[str, float]:
    """The figures a report shows for one run (see :mod:`backtest.metrics`)."""
    returns = metrics.daily_returns(result)
    return {
        "sharpe": metrics.sharpe(returns),
        "calmar": metrics.calmar(result),
        "profit_factor": metrics.profit_factor(result.trades),
        "log_loss": log_loss(result.decisions),
        "total_return": metrics.total_return(result),
        "max_drawdown": metrics.max_drawdown(result),
        "trades": float(len(result.trades)),
    }


def score(objective: str, figs: Mapping[str, float]) -> float:
    """A window's objective value, finite: no trade or no spread scores as no edge."""
    value = figs[objective]
    if objective == "profit_factor":
        return min(value, PROFIT_FACTOR_CAP) if not math.isnan(value) else 0.0
    if objective == "log_loss":
        return value if math.isfinite(value) else math.log(2.0)
    return value if math.isfinite(value) else 0.0


def combine(per_window: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Figures of several windows: sums of trades, the mean of the rest (finite values only)."""
    out: dict[str, float] = {}
    for key in FIGURES:
        values = [w[key] for w in per_window if not math.isnan(w[key])]
        if key == "trades":
            out[key] = float(sum(values))
        else:
            out[key] = float(np.mean(values)) if values else math.nan
    return out


def run_windows(
    market: Market, config: XylenConfig, bounds: Sequence[tuple[int, int]], log: RunLog | None = None
) -> list[dict[str, float]]:
    """The backtest of ``config`` on each window (its records to ``log``); its figures per window."""
    out = []
    for start, end in bounds:
        history, book = market.window(start, end)
        result = asyncio.run(run_backtest(config, history, votes=book, options=RunOptions(log=log)))
        out.append(figures(result))
    return out


def objective_fn(
    market: Market, config: XylenConfig, objective: str, log: RunLog | None = None
) -> Callable[[optuna.Trial], float]:
    """The trial function: set the parameters, run the in-sample windows (their records to ``log``),
    score them."""

    def run_trial(trial: optuna.Trial) -> float:
        params = {p.key: p.suggest(trial) for p in SPACE}
        trial_config = apply_params(config, params)
        per_window = run_windows(market, trial_config, market.plan.in_sample, log)
        values = [score(objective, w) for w in per_window]
        trial.set_user_attr("in_sample", _plain(combine(per_window)))
        trial.set_user_attr("window_scores", values)
        return float(np.mean(values))

    return run_trial


def _plain(figs: Mapping[str, float]) -> dict[str, float | None]:
    """JSON-safe figures (NaN and inf as None or a capped number)."""
    return {k: (v if math.isfinite(v) else None) for k, v in figs.items()}


# ------------------------------------------------------------------------------------ studies


def storage_for(url: str, attempts: int = 5) -> optuna.storages.RDBStorage:
    """An RDB storage; SQLite waits for its lock instead of failing when workers write at once, and
    workers send heartbeats so a dead worker's trial is marked failed by the others.

    Workers starting together on a new database race to create its tables (one gets "table already
    exists"): a SQLite file's creation is serialised by a lock file beside it, and any database's
    is retried a few times."""
    kwargs: dict[str, Any] = {}
    lock: Path | None = None
    if url.startswith("sqlite:"):
        kwargs["connect_args"] = {"timeout": 60}
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            lock = Path(path + ".lock")
    for attempt in range(attempts):
        try:
            # the heartbeat is marked experimental by optuna: its warning is silenced
            with _locked(lock) if lock is not None else contextlib.nullcontext(), warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url, engine_kwargs=kwargs, heartbeat_interval=60, grace_period=180
                )
        except sqlalchemy.exc.DatabaseError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def open_study(
    storage: optuna.storages.RDBStorage,
    name: str,
    objective: str,
    settings: Mapping[str, Any],
    seed: int | None,
) -> optuna.Study:
    """Create or join study ``name``; refuse to join one made with other settings."""
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        direction=optuna.study.StudyDirection.MAXIMIZE
        if OBJECTIVES[objective] == "maximize"
        else optuna.study.StudyDirection.MINIMIZE,
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=10),
    )
    known = study.user_attrs.get("settings")
    if known is None:
        study.set_user_attr("settings", dict(settings))
    elif known != dict(settings):
        diff = sorted(k for k in set(known) | set(settings) if known.get(k) != settings.get(k))
        raise UsageError(
            f"study {name!r} was created with other settings ({', '.join(diff)}): "
            "give the same ones or another --study"
        )
    return study


# ------------------------------------------------------------------------------------ votes cache


def settings_key(settings: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def cached_votes(cache: Path | None, key: str, compute: Callable[[], list[ModelVotes]]) -> list[ModelVotes]:
    """The votes stored under ``cache/key``, else computed (once: other workers wait) and stored."""
    if cache is None:
        return compute()
    path = cache / f"votes-{key}.npz"
    with _locked(cache / f"votes-{key}.lock"):
        if path.is_file():
            return _load_votes(path)
        models = compute()
        tmp = path.with_suffix(".tmp.npz")
        meta = [{"model_id": m.model_id, "backend": m.backend, "versions": m.versions} for m in models]
        arrays = {f"p{k}": m.probs for k, m in enumerate(models)}
        np.savez(tmp, meta=np.array(json.dumps(meta)), **arrays)  # type: ignore[arg-type]
        tmp.replace(path)
        return models


def _load_votes(path: Path) -> list[ModelVotes]:
    with np.load(path) as data:
        meta = json.loads(str(data["meta"]))
        return [
            ModelVotes(
                m["model_id"], m["backend"], np.asarray(data[f"p{k}"], dtype=np.float64), list(m["versions"])
            )
            for k, m in enumerate(meta)
        ]


# ------------------------------------------------------------------------------------ report


def importances(study: optuna.Study) -> dict[str, float]:
    """fANOVA importances of the completed trials ({} with fewer than two or no variation)."""
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(done) < 2:
        return {}
    try:
        with warnings.catch_warnings():  # few trials: optuna warns that the importances are rough
            warnings.simplefilter("ignore")
            found = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)
            )
        return {k: float(v) for k, v in found.items()}
    except (RuntimeError, ValueError):
        return {}


def best_trials(study: optuna.Study, top: int) -> list[optuna.trial.FrozenTrial]:
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None]
    sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
    return sorted(done, key=lambda t: (sign * float(t.value or 0.0), t.number))[:top]


def report(
    study: optuna.Study,
    market: Market,
    config: XylenConfig,
    objective: str,
    top: int,
    log: RunLog | None = None,
) -> dict[str, Any]:
    """The best ``top`` trials with their in-sample and out-of-sample figures (the out-of-sample runs'
    records to ``log``), and the importances."""
    rows = []
    for t in best_trials(study, top):
        oos = None
        if market.plan.out_of_sample is not None:
            figs = run_windows(market, apply_params(config, t.params), [market.plan.out_of_sample], log)[0]
            oos = _plain(figs)
        rows.append(
            {
                "trial": t.number,
                "value": t.value,
                "params": t.params,
                "in_sample": t.user_attrs.get("in_sample"),
                "out_of_sample": oos,
            }
        )
    states = [t.state.name for t in study.trials]
    return {
        "study": study.study_name,
        "objective": objective,
        "direction": study.direction.name.lower(),
        "trials": {s: states.count(s) for s in sorted(set(states))},
        "in_sample_windows": [[_iso(a), _iso(b)] for a, b in market.plan.in_sample],
        "out_of_sample": [_iso(x) for x in market.plan.out_of_sample] if market.plan.out_of_sample else None,
        "best": rows,
        "importances": importances(study),
    }


def _iso(ms: int) -> str:
    return pd.Timestamp(int(ms), unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M")
