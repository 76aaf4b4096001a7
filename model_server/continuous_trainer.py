"""``python -m model_server.continuous_trainer``: retrain, compare with the champion, promote if better.

One run (``--once``, the default, what a systemd timer starts) does, in order:

1. **Settings** like the server (:func:`model_server.settings.load_settings`: ``--env-file``, the
   environment, ``--home``); a bad value exits 2.  A lock (``<models>/.continuous-trainer.lock``)
   keeps two runs from overlapping (the second logs and exits 0).
2. **Champion:** the newest version directory of the models folder (``MODELS_DIR``, else the
   folder of ``MODEL_PATH``, else ``<home>/models``), by name, as the server picks it at start.
3. **Enough new samples?**  Feedback rows (``<home>/feedback/part-*.parquet``) received after the
   champion was created must reach ``RETRAIN_MIN_SAMPLES``, unless ``feedback/retrain.requested``
   exists (or ``--force``).  Else: "no retrain needed", exit 0.
4. **Resources:** ``psutil`` available memory >= ``MIN_FREE_MEMORY_MB`` and swap use below
   ``--max-swap-percent``; else "skipped" with the reason, exit 0.  LightGBM gets
   ``LGBM_NUM_THREADS`` threads, and the profile's row limit is scaled down when its memory budget
   exceeds ``LGBM_MAX_MEMORY_GB``.
5. **Out-of-time window:** the newest ``--eval-days`` of labelled candles in the candle store that
   start at least ``horizon + 1`` bars after the champion's last training row (purge gap >= the
   horizon).  Fewer than ``--min-eval-rows`` labelled rows there: "skipped" (nothing new to judge on).
6. **Challenger:** :func:`model_server.training.train_model` with the champion's ``TrainConfig`` as
   recorded in its ``metadata.json`` (symbol, interval, horizon, cost, ATR multiples, profile,
   LightGBM parameters, rounds, folds, seed) on the candles that end ``horizon`` bars before the
   window (their labels never read a price inside it).
7. **Comparison** on the window: log-loss (and AUC) of both, each on the probabilities it serves
   (the booster's through the model's ``calibration.json``).  The feedback rows whose market time
   falls inside the window are scored too (``feedback_log_loss``) but only reported: they are few,
   and their labels come from live trading outcomes, not from the candle label.  A champion that
   cannot be scored (missing model file, other feature version) counts as infinitely bad.
8. **Promotion** only when the challenger's log-loss is strictly lower: the model directory
   (``model.txt``, ``model.onnx``, ``calibration.json``, ``reliability.png`` and ``metadata.json`` with
   a ``continuous_training`` record) is written
   atomically as ``<models>/<model_version>``, which the running server's registry sees as a new
   version and hot-swaps in after its canary check.
9. The comparison is logged as one JSON line (``continuous-trainer {...}``) and appended to
   ``<home>/models/promotions.jsonl``; the feedback parts counted in step 3 are moved to
   ``<home>/feedback/consumed/`` and the retrain marker is removed (the buffer's contract), whether
   the champion was kept or replaced, so the same samples never trigger a second run.

Exit codes: 0 "no retrain needed" / "skipped" / "kept champion" / "promoted"; 1 a failure; 2 bad
settings or arguments.  ``--loop --interval S`` repeats runs every S seconds (default
``TRAINING_INTERVAL``) until SIGTERM/SIGINT, logging failures and going on.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import json
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import pandas as pd
import psutil
import pyarrow.parquet as pq

from model_server.calibration import IDENTITY, load_calibrator
from model_server.feedback import PART_GLOB, RETRAIN_MARKER
from model_server.predictors import METADATA_FILE
from model_server.registry import version_dirs
from model_server.settings import ServerSettings, load_settings
from model_server.training.dataset import Dataset, build_dataset
from model_server.training.profiles import DEFAULT_PROFILE, get_profile
from model_server.training.train import TrainConfig, TrainedModel, model_version, train_model, write_model_dir
from xylen.contract import ModelMetadata
from xylen.data.quality import format_ms
from xylen.data.schema import interval_ms
from xylen.data.store import CandleStore
from xylen.errors import ConfigError, DataError, UsageError, XylenError
from xylen.features import FEATURE_VERSION, max_warmup
from xylen.timeutil import wall_ms

logger = logging.getLogger(__name__)

PROMOTIONS_FILE: Final = "promotions.jsonl"
LOCK_FILE: Final = ".continuous-trainer.lock"
CONSUMED_DIR: Final = "consumed"
EPS: Final = 1e-15
Outcome = Literal["no retrain needed", "skipped", "kept champion", "promoted"]
TrainFn = Callable[[pd.DataFrame, TrainConfig, int], TrainedModel]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class TrainerOptions:
    """Knobs of the trainer that are not server settings (command-line flags)."""

    symbol: str = "BTCUSDT"  # without a champion; else the champion's
    interval: str = "5m"  # without a champion; else the champion's
    profile: str | None = None  # default: the champion's, else DEFAULT_PROFILE
    eval_days: float = 7.0
    min_eval_rows: int = 500
    max_swap_percent: float = 50.0
    force: bool = False
    onnx: bool = True

    def validate(self) -> None:
        """``UsageError`` naming the first bad option."""
        if self.profile is not None:
            try:
                get_profile(self.profile)
            except KeyError as exc:
                raise UsageError(f"--profile: {exc.args[0]}") from None
        if self.eval_days <= 0 or self.min_eval_rows < 1:
            raise UsageError("--eval-days must be > 0 and --min-eval-rows >= 1")
        if not 0 < self.max_swap_percent <= 100:
            raise UsageError("--max-swap-percent must be in (0, 100]")
        try:
            interval_ms(self.interval)
        except ValueError as exc:
            raise UsageError(f"--interval: {exc}") from None


@dataclass(frozen=True)
class RunResult:
    """What one run decided; ``record`` is the comparison line (None when nothing was trained)."""

    outcome: Outcome
    reason: str
    record: dict[str, Any] | None = None
    path: Path | None = None


@dataclass(frozen=True)
class Champion:
    path: Path
    metadata: ModelMetadata


@dataclass(frozen=True)
class Samples:
    parts: tuple[Path, ...]
    count: int
    requested: bool


@dataclass(frozen=True)
class Scores:
    log_loss: float
    auc: float | None
    rows: int


# -- helpers -----------------------------------------------------------------------------------------
def find_champion(models_dir: Path) -> Champion | None:
    """The newest version directory (by name) whose ``metadata.json`` parses."""
    for path in reversed(version_dirs(models_dir)):
        try:
            meta = ModelMetadata.model_validate_json((path / METADATA_FILE).read_bytes())
        except (OSError, ValueError) as exc:
            logger.warning("ignoring %s: unreadable metadata (%s)", path, exc)
            continue
        return Champion(path, meta)
    return None


def count_samples(feedback_dir: Path, since_ms: int) -> Samples:
    """Feedback parts present and their rows received after ``since_ms``."""
    parts = tuple(sorted(feedback_dir.glob(PART_GLOB))) if feedback_dir.is_dir() else ()
    count = 0
    for part in parts:
        try:
            received = pq.read_table(part, columns=["received_at"]).column(0).to_numpy()
        except (OSError, KeyError, ValueError) as exc:
            logger.warning("ignoring unreadable feedback part %s: %s", part, exc)
            continue
        count += int((received > since_ms).sum())
    return Samples(parts, count, (feedback_dir / RETRAIN_MARKER).exists())


def resource_check(settings: ServerSettings, max_swap_percent: float) -> str | None:
    """Why training must not start now (memory or swap), or ``None``."""
    available_mb = psutil.virtual_memory().available / 2**20
    if available_mb < settings.min_free_memory_mb:
        return (
            f"available memory {available_mb:.0f} MB < MIN_FREE_MEMORY_MB {settings.min_free_memory_mb:.0f}"
        )
    swap = psutil.swap_memory()
    if swap.total and swap.percent >= max_swap_percent:
        return f"swap use {swap.percent:.1f}% >= {max_swap_percent:.1f}%"
    return None


def config_from_champion(
    meta: ModelMetadata | None, settings: ServerSettings, options: TrainerOptions
) -> TrainConfig:
    """The champion's ``TrainConfig`` (from its metadata), with this host's threads and memory cap."""
    extra: dict[str, Any] = dict(meta.model_extra or {}) if meta is not None else {}
    profile = get_profile(options.profile or str(extra.get("profile") or DEFAULT_PROFILE))
    values: dict[str, Any] = {"profile": profile.name, "num_threads": settings.lgbm_num_threads}
    budget_mb = settings.lgbm_max_memory_gb * 1024
    if profile.memory_budget_mb > budget_mb:
        values["max_rows"] = max(10_000, int(profile.max_rows * budget_mb / profile.memory_budget_mb))
    if meta is None:
        values.update(symbol=options.symbol, interval=options.interval)
        return TrainConfig(**values)
    params = {k: v for k, v in dict(extra.get("lgb_params") or {}).items() if k != "num_threads"}
    label = dict(extra.get("label") or {})
    wf = dict(extra.get("walk_forward") or {})
    values.update(
        symbol=meta.symbol,
        interval=meta.base_interval,
        horizon_bars=meta.horizon_bars,
        stop_atr_multiple=meta.stop_atr_multiple,
        take_profit_atr_multiple=meta.take_profit_atr_multiple,
        params=params,
        # the challenger learns from the newest data too: the trainer judges it on its own
        # out-of-time window against the champion, so no final window is held out here
        final_test_days=0,
    )
    if "cost" in label:
        values["cost"] = float(label["cost"])
    if extra.get("num_boost_round"):
        values["num_boost_round"] = int(extra["num_boost_round"])
    if wf.get("folds"):
        values["n_folds"] = int(wf["folds"])
    if wf.get("purge_bars") is not None:
        values["purge_bars"] = int(wf["purge_bars"])
    if wf.get("embargo_bars") is not None:
        values["embargo_bars"] = int(wf["embargo_bars"])
    if "seed" in params:
        values["seed"] = int(params["seed"])
    return TrainConfig(**values)


def log_loss(y: F64, p: F64) -> float:
    """Binary log-loss with probabilities clipped to [1e-15, 1 - 1e-15]."""
    q = np.clip(p, EPS, 1 - EPS)
    return float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))


def score(y: F64, p: F64) -> Scores:
    from sklearn.metrics import roc_auc_score

    auc = float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else None
    return Scores(log_loss(y, p), auc, len(y))


def _predict(booster: lgb.Booster, names: Sequence[str], ds_names: Sequence[str], X: Any) -> F64:
    """``booster`` on the columns ``names`` of ``X`` (whose columns are ``ds_names``)."""
    index = {n: i for i, n in enumerate(ds_names)}
    missing = [n for n in names if n not in index]
    if missing:
        raise ValueError(f"features unknown to feature engine {FEATURE_VERSION}: {missing[:5]}")
    cols = [index[n] for n in names]
    return np.asarray(booster.predict(np.ascontiguousarray(X[:, cols])), dtype=np.float64)


def _feedback_rows(parts: Sequence[Path], names: Sequence[str], start_ms: int) -> pd.DataFrame:
    """Labelled feedback rows with every feature in ``names`` and market time >= ``start_ms``."""
    frames = []
    for part in parts:
        try:
            frame = pd.read_parquet(part, columns=[*names, "label", "timestamp"])
        except (KeyError, ValueError, OSError):
            continue  # another feature set
        frames.append(frame[frame["timestamp"] >= start_ms].dropna())
    if not frames:
        return pd.DataFrame(columns=[*names, "label", "timestamp"])
    return pd.concat(frames, ignore_index=True)


def _unique_now(models_dir: Path, now_ms: int) -> int:
    """``now_ms`` moved forward by whole seconds until its version directory name is free."""
    while (models_dir / model_version(now_ms)).exists():
        now_ms += 1000
    return now_ms


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line (a single ``write`` on an ``O_APPEND`` descriptor) and fsync."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def consume(samples: Samples, feedback_dir: Path) -> None:
    """Move the counted parts to ``feedback/consumed/`` and remove the retrain marker."""
    target = feedback_dir / CONSUMED_DIR
    target.mkdir(parents=True, exist_ok=True)
    for part in samples.parts:
        with contextlib.suppress(FileNotFoundError):
            os.replace(part, target / part.name)
    with contextlib.suppress(FileNotFoundError):
        (feedback_dir / RETRAIN_MARKER).unlink()


@contextlib.contextmanager
def run_lock(models_dir: Path) -> Iterator[bool]:
    """An exclusive, non-blocking ``flock``; yields False when another run holds it."""
    models_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(models_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


# -- one run -----------------------------------------------------------------------------------------
def _default_train(candles: pd.DataFrame, config: TrainConfig, now_ms: int) -> TrainedModel:
    return train_model(candles, config, now_ms=now_ms)


def run_once(
    settings: ServerSettings,
    options: TrainerOptions | None = None,
    *,
    now_ms: int | None = None,
    train: TrainFn = _default_train,
) -> RunResult:
    """One trainer run (see the module docstring); ``train`` is the seam the tests use."""
    options = options or TrainerOptions()
    options.validate()
    models_dir = settings.watch_dir
    with run_lock(models_dir) as locked:
        if not locked:
            return _finish(settings, RunResult("skipped", "another continuous trainer run holds the lock"))
        return _run_locked(settings, options, models_dir, now_ms, train)


def _finish(settings: ServerSettings, result: RunResult) -> RunResult:
    if result.record is not None:
        append_record(settings.home.models / PROMOTIONS_FILE, result.record)
        logger.info("continuous-trainer %s", json.dumps(result.record, sort_keys=True))
    else:
        logger.info("continuous-trainer %s", json.dumps({"outcome": result.outcome, "reason": result.reason}))
    return result


def _run_locked(
    settings: ServerSettings, options: TrainerOptions, models_dir: Path, now_ms: int | None, train: TrainFn
) -> RunResult:
    started = time.perf_counter()
    feedback_dir = settings.home.feedback
    champion = find_champion(models_dir)
    since = champion.metadata.created_at if champion is not None else -1
    samples = count_samples(feedback_dir, since)
    need = settings.retrain_min_samples
    if samples.count < need and not samples.requested and not options.force:
        return _finish(
            settings,
            RunResult(
                "no retrain needed", f"{samples.count} new feedback sample(s) < RETRAIN_MIN_SAMPLES {need}"
            ),
        )
    why_not = resource_check(settings, options.max_swap_percent)
    if why_not is not None:
        return _finish(settings, RunResult("skipped", why_not))

    meta = champion.metadata if champion is not None else None
    config = config_from_champion(meta, settings, options)
    config.validate()
    step = interval_ms(config.interval)
    h = config.horizon_bars
    gap = max(h, config.purge_bars or h)
    candles = CandleStore(settings.home.candles).read("um", config.symbol, config.interval)
    if candles.empty:
        raise DataError(f"no candles for um/{config.symbol}/{config.interval} in {settings.home.candles}")
    ot = candles["open_time"].to_numpy(np.int64)

    # The out-of-time window: labelled rows, after the champion's training span plus the purge gap.
    last_labelled = int(ot[-1]) - h * step
    eval_start = last_labelled - int(options.eval_days * 86_400_000) + step
    if meta is not None:
        eval_start = max(eval_start, meta.train_end + (gap + 1) * step)
    warm = max_warmup(config.interval)
    eval_candles = candles[ot >= eval_start - (warm + 1) * step].reset_index(drop=True)
    ds: Dataset | None = None
    rows = 0
    with contextlib.suppress(DataError):
        ds = build_dataset(eval_candles, config.interval, h, config.cost)
        rows = int((ds.open_time >= eval_start).sum())
    if ds is None or rows < options.min_eval_rows:
        return _finish(
            settings,
            RunResult(
                "skipped",
                f"{rows} labelled out-of-time row(s) from {format_ms(eval_start)} "
                f"(need --min-eval-rows {options.min_eval_rows})",
            ),
        )
    with contextlib.suppress(FileNotFoundError):
        (feedback_dir / RETRAIN_MARKER).unlink()  # taken: a new request may come in meanwhile
    mask = ds.open_time >= eval_start
    X_eval, y_eval = ds.X[mask], ds.y[mask].astype(np.float64)

    train_end = eval_start - gap * step  # rows t < eval_start - gap: labels end before the window
    train_candles = candles[ot < train_end].reset_index(drop=True)
    now = _unique_now(models_dir, now_ms if now_ms is not None else wall_ms())
    logger.info(
        "training challenger on %d candles up to %s; window %s .. %s (%d rows)",
        len(train_candles),
        format_ms(train_end),
        format_ms(eval_start),
        format_ms(int(ds.open_time[-1])),
        rows,
    )
    model = train(train_candles, config, now)
    # Both sides are scored on the probabilities they serve: the booster's through its calibrator.
    challenger_p = model.calibrator.apply(
        _predict(model.booster, model.metadata.feature_names, ds.feature_names, X_eval)
    )
    challenger = score(y_eval, challenger_p)

    champion_scores: Scores | None = None
    champion_error: str | None = None
    champion_booster: lgb.Booster | None = None
    champion_cal = IDENTITY
    if champion is not None and meta is not None:
        try:
            if meta.feature_version != FEATURE_VERSION:
                raise ValueError(f"feature version {meta.feature_version} != {FEATURE_VERSION}")
            champion_booster = lgb.Booster(model_file=str(champion.path / "model.txt"))
            champion_cal = load_calibrator(champion.path)  # CalibrationError is a ValueError
            champion_p = champion_cal.apply(
                _predict(champion_booster, meta.feature_names, ds.feature_names, X_eval)
            )
            champion_scores = score(y_eval, champion_p)
        except (ValueError, OSError, lgb.basic.LightGBMError) as exc:
            champion_error = str(exc)
            logger.warning("champion %s cannot be scored: %s", champion.path.name, exc)

    feedback: dict[str, Any] = {"rows": 0}
    fb = _feedback_rows(samples.parts, model.metadata.feature_names, eval_start)
    if len(fb):
        fy = fb["label"].to_numpy(np.float64)
        fx = fb[list(model.metadata.feature_names)].to_numpy(np.float32)
        names = model.metadata.feature_names
        feedback = {
            "rows": len(fb),
            "challenger_log_loss": log_loss(
                fy, model.calibrator.apply(_predict(model.booster, names, names, fx))
            ),
        }
        if champion_booster is not None and meta is not None and all(n in fb for n in meta.feature_names):
            cx = fb[list(meta.feature_names)].to_numpy(np.float32)
            champion_fb = champion_cal.apply(np.asarray(champion_booster.predict(cx), np.float64))
            feedback["champion_log_loss"] = log_loss(fy, champion_fb)

    champion_loss = champion_scores.log_loss if champion_scores is not None else math.inf
    promote = challenger.log_loss < champion_loss
    outcome: Outcome = "promoted" if promote else "kept champion"
    record: dict[str, Any] = {
        "at": wall_ms(),
        "outcome": outcome,
        "symbol": config.symbol,
        "interval": config.interval,
        "champion": meta.model_version if meta is not None else None,
        "champion_dir": champion.path.name if champion is not None else None,
        "challenger": model.metadata.model_version,
        "champion_log_loss": champion_scores.log_loss if champion_scores is not None else None,
        "challenger_log_loss": challenger.log_loss,
        "champion_auc": champion_scores.auc if champion_scores is not None else None,
        "challenger_auc": challenger.auc,
        "champion_error": champion_error,
        "eval_start": eval_start,
        "eval_end": int(ds.open_time[-1]),
        "eval_rows": rows,
        "purge_bars": gap,
        "challenger_train_start": model.metadata.train_start,
        "challenger_train_end": model.metadata.train_end,
        "new_samples": samples.count,
        "retrain_requested": samples.requested,
        "feedback_validation": feedback,
        "profile": config.profile,
        "horizon_bars": h,
        "seconds": round(time.perf_counter() - started, 3),
    }
    path: Path | None = None
    if promote:
        meta_out = model.metadata.model_copy(update={"continuous_training": record})
        path = write_model_dir(
            dataclasses.replace(model, metadata=meta_out),
            models_dir / model.metadata.model_version,
            options.onnx,
        )
        record["path"] = str(path)
    consume(samples, feedback_dir)
    if champion_scores is not None:
        reason = f"log-loss {challenger.log_loss:.6f} vs champion {champion_scores.log_loss:.6f}"
    else:
        reason = f"log-loss {challenger.log_loss:.6f}; champion: {champion_error or 'none'}"
    return _finish(settings, RunResult(outcome, reason, record, path))


# -- command line ------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m model_server.continuous_trainer",
        description="Retrain LightGBM; promote the challenger only when it beats the champion.",
    )
    parser.add_argument("--home", default=None, help="home folder (default $XYLEN_HOME, else ./data)")
    parser.add_argument("--env-file", type=Path, default=None, help="the model server's env file")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="one run (default)")
    mode.add_argument("--loop", action="store_true", help="a run every --interval seconds")
    parser.add_argument("--interval", type=float, default=None, help="seconds (default TRAINING_INTERVAL)")
    parser.add_argument("--symbol", default="BTCUSDT", help="without a champion (default BTCUSDT)")
    parser.add_argument("--candle-interval", default="5m", help="without a champion (default 5m)")
    parser.add_argument("--profile", default=None, help="default: the champion's")
    parser.add_argument("--eval-days", type=float, default=7.0, help="out-of-time window (default 7)")
    parser.add_argument("--min-eval-rows", type=int, default=500, help="default 500")
    parser.add_argument("--max-swap-percent", type=float, default=50.0, help="default 50")
    parser.add_argument("--force", action="store_true", help="train even without new samples")
    parser.add_argument("--no-onnx", action="store_true", help="write no model.onnx")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--log-format", default="auto", choices=["auto", "text", "json"])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point (exit codes in the module docstring)."""
    from xylen.logs import setup_logging

    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    try:
        settings = load_settings(args.env_file, xylen_home=args.home)
        options = TrainerOptions(
            symbol=args.symbol.upper(),
            interval=args.candle_interval,
            profile=args.profile,
            eval_days=args.eval_days,
            min_eval_rows=args.min_eval_rows,
            max_swap_percent=args.max_swap_percent,
            force=args.force,
            onnx=not args.no_onnx,
        )
        options.validate()
        if args.interval is not None and args.interval <= 0:
            raise UsageError("--interval must be > 0")
    except (ConfigError, UsageError) as exc:
        print(f"continuous_trainer: error: {exc}", file=sys.stderr)
        return 2
    if not args.loop:
        return _run_guarded(settings, options)
    interval = args.interval if args.interval is not None else settings.training_interval
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.is_set():
        _run_guarded(settings, options)
        stop.wait(max(1.0, interval))
    return 0


def _run_guarded(settings: ServerSettings, options: TrainerOptions) -> int:
    try:
        run_once(settings, options)
    except (XylenError, RuntimeError, ValueError, OSError, MemoryError, lgb.basic.LightGBMError) as exc:
        logger.exception("continuous trainer run failed: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
