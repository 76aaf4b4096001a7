"""``xylen train``: train a LightGBM direction model and write its model directory.

``--symbol BTCUSDT,ETHUSDT`` trains one model over several markets, pooled (each symbol's own
scale-free features and labels, merged in time); the model's ``metadata.json`` names its symbols,
and a model server refuses predictions for any other.

One command for every host: ``--profile`` (8gb, 16gb, m1, m4) sets threads, histogram bins,
subsampling and the row limit (see :mod:`model_server.training.profiles`).  Candles come from the
candle store under the home folder (USDⓈ-M), or from ``--input`` (.feather/.parquet/.csv/.zip).
Horizon, round-trip cost and ATR multiples default to the ``trading`` section of ``--config``
(or its defaults).  The newest ``--final-test-days`` are held out from training and calibration and
measure the shipped model.  Prints the walk-forward table and the calibration report; exit 0 ok,
1 runtime failure, 2 bad usage.

``--dask tcp://host:8786`` fits the boosters on a Dask cluster (``--dask local:N``: N worker
processes on this host), each worker reading its own months of the candle store
(:mod:`model_server.training.dask_train`); the model directory is the same as a local run's, with
``training.dask`` in ``metadata.json``.  Dask is imported only with ``--dask``.
"""

from __future__ import annotations

import argparse
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from xylen.errors import UsageError

logger = logging.getLogger(__name__)

# The names of model_server.training.profiles.PROFILES (a test keeps them equal), listed here so
# that `xylen --help` does not import LightGBM.
PROFILE_CHOICES: tuple[str, ...] = ("8gb", "16gb", "m1", "m4")


def register(sub: Any) -> None:
    """Add the ``train`` subcommand to the top-level subparsers."""
    parser = sub.add_parser(
        "train",
        help="train a LightGBM model (walk-forward validated) into a model directory",
        description="Train a LightGBM up/down classifier with walk-forward validation and write "
        "model.txt, model.onnx and metadata.json atomically.",
    )
    parser.add_argument(
        "--symbol",
        required=True,
        help="e.g. BTCUSDT; several, comma-separated (BTCUSDT,ETHUSDT), train one pooled model for all",
    )
    parser.add_argument("--interval", default="5m", help="base candle interval (default 5m)")
    parser.add_argument("--profile", default="8gb", choices=PROFILE_CHOICES, help="hardware profile")
    parser.add_argument("--out", required=True, help="model directory to write (replaced atomically)")
    parser.add_argument(
        "--input",
        default=None,
        help="candle file instead of the candle store; with several symbols, one file per symbol, "
        "comma-separated in the same order",
    )
    parser.add_argument("--from", dest="start", default=None, help="first open time, e.g. 2024-01-01")
    parser.add_argument("--to", dest="end", default=None, help="end (exclusive), e.g. 2024-03-01")
    parser.add_argument(
        "--horizon-bars", type=int, default=None, help="label horizon in bars (default 1 hour)"
    )
    parser.add_argument("--tune", type=int, default=0, metavar="N", help="Optuna trials before training")
    parser.add_argument("--folds", type=int, default=5, help="walk-forward folds (default 5)")
    parser.add_argument("--rounds", type=int, default=None, help="boosting rounds (default: profile)")
    parser.add_argument("--threads", type=int, default=None, help="LightGBM threads (default: profile)")
    parser.add_argument(
        "--max-rows", type=int, default=None, help="newest labelled rows (default: profile; with --dask: all)"
    )
    parser.add_argument(
        "--final-test-days",
        type=float,
        default=None,
        metavar="D",
        help="newest days held out from training and calibration to measure the shipped model "
        "(default 60, at most a fifth of the span; 0: none)",
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--onnx-precision", choices=["float", "double"], default="float")
    parser.add_argument("--no-onnx", action="store_true", help="write model.txt and metadata.json only")
    parser.add_argument("--config", default=None, help="config.yaml for the trading section")
    parser.add_argument(
        "--dask",
        default=None,
        metavar="ADDRESS",
        help="fit on a Dask cluster: its scheduler (tcp://host:8786), or local:N worker processes "
        "here; every worker must read the candle store at the same path",
    )
    parser.add_argument(
        "--dask-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds to reach the Dask scheduler and find a worker (default 10)",
    )
    parser.set_defaults(func=run)


def parse_time(value: str | None, flag: str) -> int | None:
    """``2024-01-01`` / ISO date-time (UTC if naive) / integer ms -> ms UTC."""
    if value is None:
        return None
    if value.isdigit():
        return int(value)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{flag}: not a date {value!r} (expected e.g. 2024-01-01)") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return int(parsed.timestamp() * 1000)


def parse_symbols(value: str) -> tuple[str, ...]:
    """``BTCUSDT`` or ``btcusdt,ETHUSDT`` -> upper-case symbols, in order; UsageError when malformed."""
    symbols = tuple(part.strip().upper() for part in value.split(","))
    bad = [s for s in symbols if not s or not s.isalnum()]
    if bad or not symbols:
        raise UsageError(f"--symbol: expected e.g. BTCUSDT or BTCUSDT,ETHUSDT, got {value!r}")
    if len(set(symbols)) != len(symbols):
        raise UsageError(f"--symbol names a symbol twice: {value!r}")
    return symbols


def _check_positive(name: str, value: int | None, minimum: int = 1) -> None:
    if value is not None and value < minimum:
        raise UsageError(f"{name} must be >= {minimum}, got {value}")


def run(args: argparse.Namespace) -> int:
    """Load candles, train, print the walk-forward table, write the model directory."""
    from model_server.training import TrainConfig, format_table, load_candles, train_model, write_model_dir
    from model_server.training.train import format_report
    from xylen.config.loader import load_config
    from xylen.config.schema import TradingConfig

    start, end = parse_time(args.start, "--from"), parse_time(args.end, "--to")
    if start is not None and end is not None and start >= end:
        raise UsageError("--from must be before --to")
    _check_positive("--horizon-bars", args.horizon_bars)
    _check_positive("--folds", args.folds)
    _check_positive("--rounds", args.rounds)
    _check_positive("--threads", args.threads)
    _check_positive("--max-rows", args.max_rows)
    _check_positive("--tune", args.tune, 0)
    if args.final_test_days is not None and not args.final_test_days >= 0:
        raise UsageError(f"--final-test-days must be >= 0, got {args.final_test_days}")
    symbols = parse_symbols(args.symbol)
    dask_address = getattr(args, "dask", None)
    if dask_address is not None:
        if len(symbols) > 1 or args.input is not None or args.tune:
            raise UsageError(
                "--dask trains one symbol from the candle store: no --input, --tune or symbol list"
            )
        if not 0 < args.dask_timeout <= 600:
            raise UsageError(f"--dask-timeout must be in (0, 600], got {args.dask_timeout}")
        from model_server.training.dask_train import parse_dask_target

        parse_dask_target(dask_address)  # a malformed address fails before any data is read
    inputs: list[str | None] = [None] * len(symbols)
    if args.input is not None:
        inputs = [p.strip() for p in str(args.input).split(",")]
        if len(inputs) != len(symbols):
            raise UsageError(f"--input names {len(inputs)} file(s) for {len(symbols)} symbol(s)")
    trading = load_config(args.config).trading if args.config else TradingConfig()
    overrides: dict[str, Any] = {
        "symbol": symbols[0],
        "symbols": symbols if len(symbols) > 1 else (),
        "profile": args.profile,
        "n_folds": args.folds,
        "num_boost_round": args.rounds,
        "num_threads": args.threads,
        "max_rows": args.max_rows,
        "tune_trials": args.tune,
        "seed": args.seed,
        "onnx_precision": args.onnx_precision,
        "final_test_days": args.final_test_days,
    }
    if args.horizon_bars is not None:
        overrides["horizon_bars"] = args.horizon_bars
    try:
        config = TrainConfig.from_trading(trading, interval=args.interval, **overrides)
        config.validate()
    except (ValueError, KeyError) as exc:
        raise UsageError(str(exc)) from exc
    if dask_address is not None:
        model = _train_on_dask(args, config, dask_address, start, end)
    else:
        frames = {
            sym: load_candles(sym, config.interval, args.home, path, start, end)
            for sym, path in zip(symbols, inputs, strict=True)
        }
        try:
            model = train_model(frames if len(symbols) > 1 else frames[symbols[0]], config)
        except ValueError as exc:  # e.g. a final window too long for the data
            raise UsageError(str(exc)) from exc
    meta = model.metadata
    rows = int((meta.model_extra or {}).get("label", {}).get("rows", 0))
    print(
        f"{','.join(meta.symbols)} {meta.base_interval}: {rows:,} labelled rows, horizon "
        f"{meta.horizon_bars} bars, no-trade band {meta.label_band * 1e4:.1f} bps, profile {config.profile}"
    )
    print(format_table(model.walk_forward))
    print(format_report(model))
    out = write_model_dir(model, Path(args.out), onnx=not args.no_onnx)
    print(f"wrote {out} (model_version {meta.model_version})")
    return 0


def _train_on_dask(
    args: argparse.Namespace, config: Any, address: str, start: int | None, end: int | None
) -> Any:
    """Train with the boosters fitted on the Dask cluster at ``address`` (or ``local:N``)."""
    from model_server.training import train_model
    from model_server.training.dask_train import dask_session, load_dask_dataset, parse_dask_target
    from xylen.paths import Home

    target = parse_dask_target(address)
    root = Home.resolve(args.home).candles.resolve()
    threads = config.num_threads or 1
    # The profile's row limit is one host's memory budget; on a cluster only --max-rows cuts.
    max_rows = config.max_rows
    with dask_session(target, args.dask_timeout, threads_per_worker=threads) as session:
        data = load_dask_dataset(
            session,
            root,
            config.symbol,
            config.interval,
            config.horizon_bars,
            config.cost,
            start,
            end,
            max_rows,
        )
        print(f"dask: {len(data.parts)} month(s) on {len(data.placement)} worker(s) at {target.describe()}")
        try:
            return train_model(None, config, dataset=data.dataset, fit=data.fit, metadata_extra=data.info)
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
