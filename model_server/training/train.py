"""Training orchestration: candles -> walk-forward report -> final model -> model directory.

Used by ``xylen train`` and by the continuous trainer::

    config = TrainConfig.from_trading(trading, symbol="BTCUSDT", profile="8gb")
    model = train_model(candles, config)          # walk-forward metrics + the model fit on all rows
    print(format_table(model.walk_forward))
    write_model_dir(model, home.models / "btc-lgbm")  # model.txt, model.onnx, metadata.json, atomically

The model directory is built in a hidden sibling (``.partial-<name>.<pid>.<hex>``), every file is
fsynced, and it is then moved into place: with :func:`os.rename` when the target is new, and by an
atomic exchange (Linux ``renameat2(RENAME_EXCHANGE)``) when it replaces an older directory; elsewhere
the old directory is renamed aside first and put back if the second rename fails.  A failure before
the final rename leaves no new directory and the old one untouched.  Before anything is written the
ONNX model is checked against LightGBM on up to 10,000 of the training rows
(:func:`model_server.convert_to_onnx.validate_parity`); a failed check writes nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import logging
import os
import platform
import secrets
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Final

import lightgbm as lgb
import numpy as np
import pandas as pd

from model_server.convert_to_onnx import Precision, booster_to_onnx, validate_parity
from model_server.training.dataset import Dataset, build_dataset
from model_server.training.labels import round_trip_cost
from model_server.training.profiles import DEFAULT_PROFILE, get_profile
from model_server.training.tune import tune
from model_server.training.walk_forward import WalkForwardResult, fit_booster, make_folds, walk_forward
from xylen.config.schema import TradingConfig
from xylen.contract import ModelMetadata
from xylen.data.schema import interval_ms
from xylen.features import FEATURE_VERSION
from xylen.fileio import fsync_dir
from xylen.timeutil import wall_ms

logger = logging.getLogger(__name__)

PARTIAL_PREFIX: Final = ".partial-"
VALIDATION_ROWS: Final = 10_000
_LIBRARIES: Final = (
    "lightgbm",
    "onnxruntime",
    "onnxmltools",
    "onnx",
    "numpy",
    "pandas",
    "optuna",
    "scikit-learn",
)


@dataclass(frozen=True)
class TrainConfig:
    """What to train and how; defaults follow :class:`TradingConfig` (one hour of 5m bars)."""

    symbol: str = "BTCUSDT"
    interval: str = "5m"
    horizon_bars: int = 12
    cost: float = field(default_factory=round_trip_cost)
    stop_atr_multiple: float = 1.5
    take_profit_atr_multiple: float = 2.0
    profile: str = DEFAULT_PROFILE
    n_folds: int = 5
    purge_bars: int | None = None  # default: horizon_bars
    embargo_bars: int | None = None  # default: horizon_bars
    num_boost_round: int | None = None  # default: the profile's
    num_threads: int | None = None  # default: the profile's
    max_rows: int | None = None  # default: the profile's
    params: Mapping[str, Any] = field(default_factory=dict)  # LightGBM overrides
    tune_trials: int = 0
    seed: int = 42
    onnx_precision: Precision = "float"

    @classmethod
    def from_trading(cls, trading: TradingConfig, interval: str = "5m", **overrides: Any) -> TrainConfig:
        """Horizon, cost and ATR multiples from the ``trading`` section of ``config.yaml``."""
        horizon = max(1, trading.horizon_minutes * 60_000 // interval_ms(interval))
        values: dict[str, Any] = {
            "interval": interval,
            "horizon_bars": horizon,
            "cost": round_trip_cost(trading),
            "stop_atr_multiple": trading.stop_atr_multiple,
            "take_profit_atr_multiple": trading.take_profit_atr_multiple,
        }
        values.update(overrides)
        return cls(**values)

    def validate(self) -> None:
        """``ValueError`` naming the first bad setting."""
        get_profile(self.profile)
        interval_ms(self.interval)
        if self.horizon_bars < 1:
            raise ValueError(f"horizon_bars must be >= 1, got {self.horizon_bars}")
        if self.purge_bars is not None and self.purge_bars < self.horizon_bars:
            raise ValueError(f"purge_bars ({self.purge_bars}) must be >= horizon_bars ({self.horizon_bars})")
        if self.n_folds < 1 or self.tune_trials < 0 or self.cost < 0:
            raise ValueError("n_folds must be >= 1, tune_trials >= 0, cost >= 0")


@dataclass(frozen=True)
class TrainedModel:
    booster: lgb.Booster
    metadata: ModelMetadata
    walk_forward: WalkForwardResult
    validation_rows: np.ndarray[Any, np.dtype[np.float32]]  # real rows for the ONNX parity check
    config: TrainConfig


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in (*_LIBRARIES, "xylen"):
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    return out


def model_version(now_ms: int) -> str:
    """``20240201T000000Z`` for a UTC time in ms."""
    return datetime.fromtimestamp(now_ms / 1000, tz=timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def _params(config: TrainConfig) -> tuple[dict[str, Any], int]:
    profile = get_profile(config.profile)
    params = profile.lgb_params(config.seed)
    if config.num_threads is not None:
        params["num_threads"] = config.num_threads
    params.update(config.params)
    return params, config.num_boost_round or profile.num_boost_round


def train_model(candles: pd.DataFrame, config: TrainConfig, now_ms: int | None = None) -> TrainedModel:
    """Walk-forward validate (optionally tune first), then fit the final model on every row."""
    config.validate()
    started = time.perf_counter()
    profile = get_profile(config.profile)
    ds: Dataset = build_dataset(
        candles, config.interval, config.horizon_bars, config.cost, config.max_rows or profile.max_rows
    )
    purge = config.purge_bars if config.purge_bars is not None else config.horizon_bars
    embargo = config.embargo_bars if config.embargo_bars is not None else config.horizon_bars
    folds = make_folds(int(ds.bar[-1]) + 1, config.n_folds, purge, embargo)
    params, rounds = _params(config)
    extra: dict[str, Any] = {}
    if config.tune_trials:
        result = tune(ds, folds, params, config.tune_trials, config.seed)
        best = dict(result.best_params)
        rounds = int(best.pop("num_boost_round"))
        params.update(best, bagging_freq=1)
        extra["tuning"] = {
            "trials": result.n_trials,
            "best_mean_oof_log_loss": result.best_value,
            "best_params": {**best, "num_boost_round": rounds},
        }
    wf = walk_forward(ds, params, rounds, folds)
    booster = fit_booster(ds.X, ds.y, params, rounds, ds.feature_names)
    now = now_ms if now_ms is not None else wall_ms()
    metrics = wf.summary()
    metrics["train_seconds"] = round(time.perf_counter() - started, 3)
    metadata = ModelMetadata(
        model_version=model_version(now),
        created_at=now,
        feature_version=FEATURE_VERSION,
        feature_names=list(ds.feature_names),
        base_interval=config.interval,
        symbol=config.symbol,
        horizon_bars=config.horizon_bars,
        stop_atr_multiple=config.stop_atr_multiple,
        take_profit_atr_multiple=config.take_profit_atr_multiple,
        train_start=int(ds.open_time[0]),
        train_end=int(ds.open_time[-1]),
        metrics=metrics,
        library_versions=library_versions(),
        model_type="lightgbm",
        objective="binary: P(forward return over horizon_bars > +cost | |return| > cost)",
        label={
            "definition": "1 if close[t+h]/close[t]-1 > cost, 0 if < -cost, hold band dropped",
            "cost": config.cost,
            "cost_bps": round(config.cost * 10_000, 4),
            "cost_source": "2 * (taker_fee_bps + slippage_bps) of TradingConfig",
            "rows": len(ds),
            "hold_rows_dropped": ds.n_hold,
            "up_share": ds.up_share,
        },
        atr_feature="atr_14",
        stop_rule="stop = entry -/+ stop_atr_multiple * ATR(14); take profit at take_profit_atr_multiple",
        walk_forward={
            "folds": len(wf.folds),
            "purge_bars": purge,
            "embargo_bars": embargo,
            "per_fold": [vars(f) for f in wf.folds],
        },
        profile=config.profile,
        lgb_params=params,
        num_boost_round=rounds,
        onnx_precision=config.onnx_precision,
        **extra,
    )
    logger.info(
        "trained %s: %d rows, %d trees, OOF AUC %.4f", metadata.model_version, len(ds), rounds, wf.pooled.auc
    )
    rows = ds.X[-VALIDATION_ROWS:]
    return TrainedModel(booster, metadata, wf, np.ascontiguousarray(rows), config)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux ``renameat2``); False where unsupported."""
    if platform.system() != "Linux":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    fn = getattr(libc, "renameat2", None)
    if fn is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    rc = fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return bool(rc == 0)


def _move_into_place(tmp: Path, out: Path) -> None:
    if not out.exists():
        os.rename(tmp, out)
        return
    if _exchange(tmp, out):
        shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old directory
        return
    aside = out.with_name(f"{PARTIAL_PREFIX}{out.name}.old.{os.getpid()}.{secrets.token_hex(4)}")
    os.rename(out, aside)
    try:
        os.rename(tmp, out)
    except BaseException:
        os.rename(aside, out)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def write_model_dir(model: TrainedModel, out: Path, onnx: bool = True) -> Path:
    """Write ``model.txt``, ``model.onnx`` (unless ``onnx=False``) and ``metadata.json`` atomically.

    Raises ``RuntimeError`` (nothing written) when the ONNX model disagrees with LightGBM.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = model.metadata
    extra: dict[str, Any] = {}
    onnx_bytes = b""
    if onnx:
        props = {"xylen.feature_version": meta.feature_version, "xylen.model_version": meta.model_version}
        proto = booster_to_onnx(model.booster, model.config.onnx_precision, props)
        report = validate_parity(model.booster, proto, model.validation_rows)
        if not report.passed:
            raise RuntimeError(f"ONNX model disagrees with LightGBM: {report.format()}")
        onnx_bytes = proto.SerializeToString()
        extra["onnx_parity"] = {
            "rows": report.rows,
            "max_abs_diff": report.max_abs_diff,
            "mean_abs_diff": report.mean_abs_diff,
            "action_mismatches": report.action_mismatches,
        }
    meta = meta.model_copy(update=extra) if extra else meta
    tmp = out.with_name(f"{PARTIAL_PREFIX}{out.name}.{os.getpid()}.{secrets.token_hex(4)}")
    tmp.mkdir()
    try:
        _write_synced(tmp / "model.txt", model.booster.model_to_string().encode())
        if onnx:
            _write_synced(tmp / "model.onnx", onnx_bytes)
        text = json.dumps(json.loads(meta.model_dump_json()), indent=2, sort_keys=True)
        _write_synced(tmp / "metadata.json", text.encode())
        fsync_dir(tmp)
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(out.parent)
    logger.info("wrote model directory %s (%s)", out, meta.model_version)
    return out
