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
ONNX model is checked against LightGBM on up to 10,000 of the newest rows
(:func:`model_server.convert_to_onnx.validate_parity`); a failed check writes nothing.

**Final test window.** The newest ``final_test_days`` of the data (after a purge + embargo gap) are
set aside before anything is fitted: walk-forward validation, the calibrator and the shipped
booster all use the older rows only, and the window then measures the shipped model (booster +
calibrator) on months it never saw.

**Calibration.** The walk-forward out-of-fold probabilities choose and fit the calibrator
(:mod:`model_server.training.calibrate`), written as ``calibration.json`` beside the model and
applied by every serving backend.  The training report (:mod:`model_server.training.evaluation`)
covers the out-of-fold rows and the final window, raw and calibrated, and the window as a server
would have served it (the calibrated answers recalibrated online from the outcomes as they arrive,
:mod:`model_server.recalibration`); it is stored in
``metadata.json`` (``evaluation``, flat figures in ``metrics``) with a reliability plot
``reliability.png``.
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

from model_server.calibration import CALIBRATION_FILE, Calibrator
from model_server.convert_to_onnx import Precision, booster_to_onnx, validate_parity
from model_server.recalibration import prequential
from model_server.training.calibrate import CalibrationChoice, select_calibrator
from model_server.training.dataset import Dataset, build_dataset, build_pooled_dataset
from model_server.training.evaluation import N_BOOT, ProbabilityReport, evaluate, reliability_png
from model_server.training.labels import round_trip_cost
from model_server.training.profiles import DEFAULT_PROFILE, get_profile
from model_server.training.tune import tune
from model_server.training.walk_forward import (
    BoosterFit,
    WalkForwardResult,
    fit_booster,
    make_folds,
    walk_forward,
)
from xylen.config.schema import TradingConfig
from xylen.contract import ModelMetadata
from xylen.data.schema import interval_ms
from xylen.features import FEATURE_VERSION
from xylen.fileio import fsync_dir
from xylen.labels import LabelSpec
from xylen.timeutil import wall_ms

logger = logging.getLogger(__name__)

PARTIAL_PREFIX: Final = ".partial-"
RELIABILITY_PNG: Final = "reliability.png"
DAY_MS: Final = 86_400_000
DEFAULT_FINAL_TEST_DAYS: Final = 60.0
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

    symbol: str = "BTCUSDT"  # the first (or only) market; ``symbols`` lists all when pooled
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
    # Newest days held out from training and calibration (0: none).  None: 60 days, at most a fifth
    # of the span (a short input keeps most of its rows for training).
    final_test_days: float | None = None
    calibrate: bool = True
    n_boot: int = N_BOOT  # day-block bootstrap resamples of the AUC interval
    symbols: tuple[str, ...] = ()  # markets pooled into one model; empty: (symbol,)

    @property
    def markets(self) -> tuple[str, ...]:
        """The symbols the model is trained for (and will answer for)."""
        return tuple(self.symbols) or (self.symbol,)

    @property
    def label(self) -> LabelSpec:
        """The label definition (:mod:`xylen.labels`): horizon and the round trip as no-trade band."""
        return LabelSpec(self.horizon_bars, self.interval, self.cost)

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
        if (self.final_test_days is not None and self.final_test_days < 0) or self.n_boot < 1:
            raise ValueError("final_test_days must be >= 0 and n_boot >= 1")
        if len(set(self.markets)) != len(self.markets):
            raise ValueError(f"symbols must be distinct, got {list(self.markets)}")


@dataclass(frozen=True)
class TrainedModel:
    booster: lgb.Booster
    metadata: ModelMetadata
    walk_forward: WalkForwardResult
    validation_rows: np.ndarray[Any, np.dtype[np.float32]]  # real rows for the ONNX parity check
    config: TrainConfig
    calibrator: Calibrator
    # oof_raw, oof_calibrated, final_raw, final (calibrated), final_served (+ online recalibration)
    reports: dict[str, ProbabilityReport]
    final_index: np.ndarray[Any, np.dtype[np.int64]]  # dataset rows of the final test window
    fit_index: np.ndarray[Any, np.dtype[np.int64]]  # dataset rows used for training and calibration


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


def split_final_window(ds: Dataset, config: TrainConfig, gap_bars: int) -> tuple[Any, Any, int]:
    """``(fit_rows, final_rows, first_final_bar)``: the newest ``final_test_days`` and the rows
    before them, minus a gap of ``gap_bars`` (purge + embargo) so that no fitted label reads a
    price of the final window.  No final window (``final_test_days == 0``): all rows fit.
    """
    all_rows = np.arange(len(ds), dtype=np.int64)
    n_bars = ds.n_bars  # from the newest candle, so prices inside the window cannot move its start
    day_bars = DAY_MS / interval_ms(config.interval)
    if config.final_test_days is None:
        bars = min(round(DEFAULT_FINAL_TEST_DAYS * day_bars), n_bars // 5)
    else:
        bars = round(config.final_test_days * day_bars)
    if bars <= 0:
        return all_rows, np.empty(0, dtype=np.int64), n_bars
    first_final = n_bars - bars
    if first_final - gap_bars < n_bars // 2:
        raise ValueError(
            f"a final window of {bars / day_bars:g} days ({bars:,} bars) leaves less than half of the "
            f"{n_bars:,} bars for training; use more data or a shorter final window"
        )
    fit = all_rows[ds.bar < first_final - gap_bars]
    final = all_rows[ds.bar >= first_final]
    return fit, final, first_final


def train_model(
    candles: pd.DataFrame | Mapping[str, pd.DataFrame] | None,
    config: TrainConfig,
    now_ms: int | None = None,
    *,
    dataset: Dataset | None = None,
    fit: BoosterFit | None = None,
    metadata_extra: Mapping[str, Any] | None = None,
) -> TrainedModel:
    """Hold out the final window, walk-forward validate (optionally tune first), fit the booster on
    the older rows, calibrate it on its out-of-fold predictions, and measure it on the final window.

    ``candles``: one market's frame, or ``{symbol: frame}`` for the symbols of ``config.markets``
    (pooled into one model, each with its own scale-free features).  ``dataset`` instead: a training
    set built elsewhere (``candles`` is then ignored).  ``fit``: fits the boosters instead of
    :func:`fit_booster` (a Dask cluster); ``metadata_extra``: more top-level ``metadata.json`` keys.
    """
    config.validate()
    started = time.perf_counter()
    profile = get_profile(config.profile)
    max_rows = config.max_rows or profile.max_rows
    if dataset is not None:
        ds: Dataset = dataset
    elif candles is None:
        raise ValueError("train_model needs candles or a dataset")
    elif isinstance(candles, pd.DataFrame):
        if len(config.markets) != 1:
            raise ValueError(f"one candle frame for {len(config.markets)} symbols; pass one per symbol")
        ds = build_dataset(candles, config.interval, config.horizon_bars, config.cost, max_rows)
    else:
        if set(candles) != set(config.markets):
            raise ValueError(f"candles for {sorted(candles)} but the model is for {list(config.markets)}")
        frames = {s: candles[s] for s in config.markets}
        ds = build_pooled_dataset(frames, config.interval, config.horizon_bars, config.cost, max_rows)
    purge = config.purge_bars if config.purge_bars is not None else config.horizon_bars
    embargo = config.embargo_bars if config.embargo_bars is not None else config.horizon_bars
    fit_rows, final_rows, first_final_bar = split_final_window(ds, config, purge + embargo)
    # Folds span the fitted rows only: the final window's bars lie beyond every fold's test block.
    folds = make_folds(int(ds.bar[fit_rows[-1]]) + 1, config.n_folds, purge, embargo)
    params, rounds = _params(config)
    extra: dict[str, Any] = dict(metadata_extra or {})
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
    wf = walk_forward(ds, params, rounds, folds, fit)
    if fit is None:
        booster = fit_booster(ds.X[fit_rows], ds.y[fit_rows], params, rounds, ds.feature_names)
    else:
        booster = fit(ds, fit_rows, params, rounds)
    base_rate = float(ds.y[fit_rows].mean())
    y_oof = ds.y[wf.oof_index].astype(np.float64)
    if config.calibrate:
        choice = select_calibrator(wf.oof_proba, y_oof, base_rate, groups=wf.oof_fold)
    else:
        choice = CalibrationChoice(Calibrator(base_rate=float(np.clip(base_rate, 1e-6, 1 - 1e-6))), {}, 0, 0)
    calibrator = choice.calibrator
    t_oof = ds.open_time[wf.oof_index]
    reports = {
        "oof_raw": evaluate("out-of-fold, raw", y_oof, wf.oof_proba, t_oof, base_rate, config.n_boot),
        "oof_calibrated": evaluate(
            "out-of-fold, calibrated", y_oof, calibrator.apply(wf.oof_proba), t_oof, base_rate, config.n_boot
        ),
    }
    if len(final_rows):
        y_fin = ds.y[final_rows].astype(np.float64)
        raw_fin = np.asarray(booster.predict(ds.X[final_rows]), dtype=np.float64)
        t_fin = ds.open_time[final_rows]
        reports["final_raw"] = evaluate("final window, raw", y_fin, raw_fin, t_fin, base_rate, config.n_boot)
        cal_fin = calibrator.apply(raw_fin)
        reports["final"] = evaluate(
            "final window, calibrated", y_fin, cal_fin, t_fin, base_rate, config.n_boot
        )
        # What a server serves over the window: the calibrated answers, recalibrated online from the
        # outcomes as the coordinator sends them (each label arrives horizon_bars rows later).
        served = prequential(cal_fin, y_fin, delay=config.horizon_bars)
        reports["final_served"] = evaluate(
            "final window, served (online recalibration)", y_fin, served, t_fin, base_rate, config.n_boot
        )
    now = now_ms if now_ms is not None else wall_ms()
    metrics = wf.summary()
    for key, report in reports.items():
        metrics.update(report.flat(key))
    metrics["train_seconds"] = round(time.perf_counter() - started, 3)
    final_days = (ds.n_bars - first_final_bar) * interval_ms(config.interval) / DAY_MS
    final_info: dict[str, Any] = {"days": round(float(final_days), 3), "rows": len(final_rows)}
    if len(final_rows):
        final_info.update(
            start=int(ds.open_time[final_rows[0]]),
            end=int(ds.open_time[final_rows[-1]]),
            first_bar=first_final_bar,
            gap_bars=purge + embargo,
        )
    metadata = ModelMetadata(
        model_version=model_version(now),
        created_at=now,
        feature_version=FEATURE_VERSION,
        feature_names=list(ds.feature_names),
        base_interval=config.interval,
        symbol=config.markets[0],
        symbols=list(config.markets),
        horizon_bars=config.horizon_bars,
        label_band=config.cost,
        stop_atr_multiple=config.stop_atr_multiple,
        take_profit_atr_multiple=config.take_profit_atr_multiple,
        train_start=int(ds.open_time[fit_rows[0]]),
        train_end=int(ds.open_time[fit_rows[-1]]),
        metrics=metrics,
        library_versions=library_versions(),
        model_type="lightgbm",
        objective="binary: P(close[t+h] > close[t] | |close[t+h]/close[t] - 1| > label_band)",
        label={
            **config.label.to_dict(),
            "cost": config.cost,
            "cost_bps": round(config.cost * 10_000, 4),
            "cost_source": "2 * (taker_fee_bps + slippage_bps) of TradingConfig",
            "rows": len(fit_rows),
            "hold_rows_dropped": ds.n_hold,
            "up_share": base_rate,
            "rows_per_symbol": _rows_per_symbol(ds, fit_rows),
        },
        atr_feature="atr_14_rel",
        stop_rule="stop = entry -/+ stop_atr_multiple * atr_14_rel * entry; take profit at "
        "take_profit_atr_multiple",
        walk_forward={
            "folds": len(wf.folds),
            "purge_bars": purge,
            "embargo_bars": embargo,
            "per_fold": [vars(f) for f in wf.folds],
        },
        final_test=final_info,
        calibration={**calibrator.to_dict(), "file": CALIBRATION_FILE},
        evaluation={key: report.to_dict() for key, report in reports.items()},
        profile=config.profile,
        lgb_params=params,
        num_boost_round=rounds,
        onnx_precision=config.onnx_precision,
        **extra,
    )
    logger.info(
        "trained %s: %d rows (%d held out), %d trees, OOF AUC %.4f, calibration %s",
        metadata.model_version,
        len(fit_rows),
        len(final_rows),
        rounds,
        wf.pooled.auc,
        choice.name,
    )
    rows = ds.X[-VALIDATION_ROWS:]
    return TrainedModel(
        booster, metadata, wf, np.ascontiguousarray(rows), config, calibrator, reports, final_rows, fit_rows
    )


def _rows_per_symbol(ds: Dataset, rows: np.ndarray[Any, np.dtype[np.int64]]) -> dict[str, int]:
    """Fitted rows of each pooled symbol (empty for a one-market dataset)."""
    if ds.symbol_index is None:
        return {}
    counts = np.bincount(ds.symbol_index[rows], minlength=len(ds.symbols))
    return {s: int(n) for s, n in zip(ds.symbols, counts, strict=True)}


def format_report(model: TrainedModel) -> str:
    """The calibration part of the training report: chosen calibrator and each set's figures."""
    cal = model.calibrator
    scores = dict(cal.info.get("nested_oof_log_loss", {}))
    lines = [f"calibration: {cal.info.get('chosen', cal.method)} (base rate {cal.base_rate:.4f})"]
    if scores:
        ranked = sorted(scores.items(), key=lambda kv: kv[1])
        shown = ", ".join(f"{name} {value:.5f}" for name, value in ranked[:6])
        lines.append(f"  nested out-of-fold log-loss (best first): {shown}")
    lines.extend(f"  {report.format()}" for report in model.reports.values())
    return "\n".join(lines)


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
    """Write ``model.txt``, ``model.onnx`` (unless ``onnx=False``), ``metadata.json``,
    ``calibration.json`` and ``reliability.png`` atomically.

    The plot shows the out-of-fold calibrated probabilities (blue), and on the final window the raw
    (red), calibrated (green) and served (purple: recalibrated online from the outcomes) ones.

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
        _write_synced(tmp / CALIBRATION_FILE, model.calibrator.to_json_bytes())
        curves = [
            model.reports[k].reliability
            for k in ("oof_calibrated", "final_raw", "final", "final_served")
            if k in model.reports
        ]
        _write_synced(tmp / RELIABILITY_PNG, reliability_png(curves))
        fsync_dir(tmp)
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(out.parent)
    logger.info("wrote model directory %s (%s)", out, meta.model_version)
    return out
