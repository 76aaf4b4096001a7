"""Votes for the backtest: static models loaded in-process and batch-predicted ahead (the fast path).

A model directory (``metadata.json`` plus ``model.txt`` and/or ``model.onnx``) is loaded with the
model server's own :func:`model_server.predictors.load_predictor` and asked for every candle of the
span in one matrix call; the probability is the one the server would serve (its calibrator
applied), the vote carries the server's fingerprint (``<backend family>:<model_version>``) so
twins are grouped as live.  A static model answers a candle from that candle's features alone, so
predicting ahead changes nothing but the speed.

Walk-forward (:func:`walk_forward_models`): one model per window, trained with ``xylen train``'s
library function on the candles that closed before the window starts (and whose labels had closed
too), each window's votes coming from its own model.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from backtest.data import MarketHistory
from coordinator.ensemble import Vote
from coordinator.ensemble.types import Action, fingerprint
from coordinator.model_client import FanOut, ServerResult, VoteStatus
from model_server.predictors import load_predictor
from xylen.contract import PredictResponse
from xylen.errors import UsageError
from xylen.features.spec import FEATURE_VERSION

logger = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]


@dataclass
class ModelVotes:
    """One model's probabilities for every row of a history (NaN where it has none)."""

    model_id: str
    backend: str
    probs: F64
    versions: list[str]  # the model_version answering each row ("" where none)

    def version_at(self, i: int) -> str:
        return self.versions[i]


def predict_dir(model_dir: Path, history: MarketHistory, rows: slice | None = None) -> tuple[F64, str, str]:
    """``(probabilities, backend, model_version)`` of the model in ``model_dir`` for the history's rows."""
    try:
        predictor, _reason = load_predictor(model_dir, "lightgbm")
    except Exception as exc:
        raise UsageError(f"model {model_dir}: {exc}") from exc
    refusal = predictor.refusal(FEATURE_VERSION, history.interval, history.symbol)
    if refusal is not None:  # its server would answer 409: the span's candles are not its
        raise UsageError(f"model {model_dir}: {refusal} (the span: {history.symbol} {history.interval})")
    features = history.features
    missing = [n for n in predictor.feature_names if n not in features.columns]
    if missing:
        raise UsageError(f"model {model_dir}: features {', '.join(missing[:5])} are not computed here")
    frame = features if rows is None else features.iloc[rows]
    matrix = np.ascontiguousarray(frame[list(predictor.feature_names)].to_numpy(np.float32))
    raw = np.asarray(predictor._predict_matrix(matrix), dtype=np.float64)
    cal = predictor.model_calibrator
    probs = raw if cal.is_identity else np.asarray(cal.apply(raw), dtype=np.float64)
    return probs, str(predictor.backend), predictor.version


def static_votes(model_id: str, model_dir: Path, history: MarketHistory) -> ModelVotes:
    """One static model's votes over the whole history."""
    probs, backend, version = predict_dir(model_dir, history)
    return ModelVotes(model_id, backend, probs, [version] * len(probs))


@dataclass
class VoteBook:
    """Precomputed votes of several models: the fan-out of a candle as the model client builds it."""

    models: list[ModelVotes]
    _responses: dict[tuple[str, str], PredictResponse] = field(default_factory=dict)

    @property
    def model_ids(self) -> list[str]:
        return [m.model_id for m in self.models]

    def fanout(self, i: int) -> FanOut:
        """The fan-out of row ``i``: a vote per model that answers it, in model order."""
        votes: list[Vote] = []
        results: list[ServerResult] = []
        for m in self.models:
            p = float(m.probs[i])
            version = m.versions[i]
            if not math.isfinite(p) or not version:
                results.append(ServerResult(m.model_id, VoteStatus.ERROR, detail="no model for this candle"))
                continue
            votes.append(Vote(m.model_id, p, Action.HOLD, fingerprint=fingerprint(m.backend, version)))
            results.append(ServerResult(m.model_id, VoteStatus.OK, response=self._response(m, version)))
        return FanOut(tuple(votes), tuple(results), 0.0)

    def _response(self, m: ModelVotes, version: str) -> PredictResponse:
        # the journal reads only the answering model's version and backend from the response
        key = (m.model_id, version)
        resp = self._responses.get(key)
        if resp is None:
            resp = self._responses[key] = PredictResponse.model_construct(
                request_id="",
                model_id=m.model_id,
                model_version=version,
                backend=m.backend,  # type: ignore[arg-type]
                action="HOLD",
                prob_up=0.5,
                confidence=0.5,
                raw_score=0.0,
                stop_loss=None,
                take_profit=None,
                latency_ms=0.0,
            )
        return resp

    def versions_at(self, i: int) -> str:
        """``id=version`` of every model answering row ``i``, joined by ``,``."""
        return ",".join(f"{m.model_id}={m.versions[i]}" for m in self.models if m.versions[i])


# ---------------------------------------------------------------------------------------- training


@dataclass(frozen=True)
class TrainSettings:
    """Small, fast settings for models trained inside a backtest (``xylen train``'s knobs)."""

    rounds: int = 60
    folds: int = 2
    max_rows: int = 40_000
    threads: int = 2
    horizon_minutes: int = 60
    seeds: tuple[int, ...] = (42,)
    min_rows: int = 3_000


def train_dir(
    candles: pd.DataFrame,
    symbol: str,
    out: Path,
    settings: TrainSettings,
    seed: int,
    version_ms: int,
    *,
    interval: str,
) -> Path:
    """Train one model on ``candles`` of ``interval`` (all closed before the window it will vote in)
    into ``out``."""
    from model_server.training import TrainConfig, train_model, write_model_dir
    from xylen.config.schema import TradingConfig

    if len(candles) < settings.min_rows:
        raise UsageError(
            f"{symbol}: only {len(candles)} candles before the window to train on (need {settings.min_rows});"
            " start later or give --models"
        )
    config = TrainConfig.from_trading(
        TradingConfig(horizon_minutes=settings.horizon_minutes),
        interval,
        symbol=symbol,
        n_folds=settings.folds,
        num_boost_round=settings.rounds,
        num_threads=settings.threads,
        max_rows=settings.max_rows,
        seed=seed,
        final_test_days=0,
        n_boot=20,
    )
    model = train_model(candles, config, now_ms=version_ms)
    return write_model_dir(model, out, onnx=False)


def walk_forward_models(
    all_candles: pd.DataFrame,
    history: MarketHistory,
    retrain_every_ms: int,
    work: Path,
    settings: TrainSettings,
) -> list[ModelVotes]:
    """One model per seed, retrained at the start of every window of ``retrain_every_ms``.

    A window's model sees only candles whose label had closed before the window began: open times
    before ``window_start - horizon``.  Rows outside the span get no vote.
    """
    ot = history.open_time
    start = int(ot[history.first])
    end = int(ot[history.stop - 1]) + history.step_ms
    horizon_ms = settings.horizon_minutes * 60_000
    all_ot = all_candles["open_time"].to_numpy(np.int64)
    out = [
        ModelVotes(f"wf-{k}", "lightgbm", np.full(len(ot), np.nan), [""] * len(ot))
        for k in range(len(settings.seeds))
    ]
    window = start
    while window < end:
        nxt = min(end, window + retrain_every_ms)
        lo = int(np.searchsorted(ot, window, "left"))
        hi = int(np.searchsorted(ot, nxt, "left"))
        train = all_candles.iloc[: int(np.searchsorted(all_ot, window - horizon_ms, "left"))]
        for k, seed in enumerate(settings.seeds):
            target = work / f"wf-{k}" / str(window)
            model_dir = train_dir(
                train.reset_index(drop=True), history.symbol, target, settings, seed, window,
                interval=history.interval,
            )  # fmt: skip
            probs, backend, version = predict_dir(model_dir, history, slice(lo, hi))
            out[k].probs[lo:hi] = probs
            out[k].backend = backend
            out[k].versions[lo:hi] = [version] * (hi - lo)
            logger.info(
                "walk-forward %s: model %s for %d candles from %d", out[k].model_id, version, hi - lo, window
            )
        window = nxt
    return out


def trained_models(
    all_candles: pd.DataFrame, history: MarketHistory, work: Path, settings: TrainSettings
) -> list[ModelVotes]:
    """Models trained once on the data before the span (the default when no model is given)."""
    start = int(history.open_time[history.first])
    train = all_candles.iloc[
        : int(
            np.searchsorted(
                all_candles["open_time"].to_numpy(np.int64), start - settings.horizon_minutes * 60_000, "left"
            )
        )
    ]
    out = []
    for k, seed in enumerate(settings.seeds):
        model_dir = train_dir(
            train.reset_index(drop=True), history.symbol, work / f"m-{k}", settings, seed, start,
            interval=history.interval,
        )  # fmt: skip
        out.append(static_votes(f"bt-{k}", model_dir, history))
    return out


def model_votes(dirs: Sequence[Path], history: MarketHistory) -> list[ModelVotes]:
    """Votes of the given model directories (ids ``bt-<folder name>``, or ``bt-<n>-<folder name>``
    when two folders share a name, e.g. ``a/models/v1`` and ``b/models/v1``)."""
    ids = [f"bt-{d.name}" for d in dirs]
    if len(set(ids)) < len(ids):
        ids = [f"bt-{n}-{d.name}" for n, d in enumerate(dirs, start=1)]
    return [static_votes(m, d, history) for m, d in zip(ids, dirs, strict=True)]
