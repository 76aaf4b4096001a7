"""``xylen convert-onnx``: LightGBM ``model.txt`` -> ``model.onnx``, optionally validated.

``--validate`` compares LightGBM's and ONNX Runtime's P(up) on ``--rows`` (default 10,000) real
feature rows: the features of ``--data`` (a candle file, or a feature Parquet with the model's
columns), by default of the shipped BTCUSDT 5m data (``$XYLEN_SHARED_DATA`` or ``../shared/data``).
It prints max and mean |dp| and the share of rows whose action differs (LONG p > 0.55, SHORT
p < 0.45) and exits 1 when the mean exceeds 1e-6, the max 5e-3 or more than 0.1 % of actions differ.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from xylen.errors import DataError, UsageError
from xylen.paths import SHARED_BTC_5M, shared_data_dir

logger = logging.getLogger(__name__)


def register(sub: Any) -> None:
    """Add the ``convert-onnx`` subcommand to the top-level subparsers."""
    parser = sub.add_parser(
        "convert-onnx",
        help="convert a LightGBM model.txt to ONNX and check parity",
        description="Convert a LightGBM model to ONNX (float32 trees with exact thresholds, or "
        "float64 trees) and optionally validate it against LightGBM on real rows.",
    )
    parser.add_argument("--input", required=True, help="LightGBM model.txt")
    parser.add_argument("--output", required=True, help="model.onnx to write")
    parser.add_argument("--validate", action="store_true", help="compare with LightGBM on real rows")
    parser.add_argument("--rows", type=int, default=10_000, help="rows to compare (default 10,000)")
    parser.add_argument("--data", default=None, help="candles or feature Parquet (default: shipped BTC 5m)")
    parser.add_argument("--interval", default="5m", help="interval of --data candles (default 5m)")
    parser.add_argument("--precision", choices=["float", "double"], default="float")
    parser.add_argument(
        "--check-only",
        action="store_true",
        help="validate the existing --output against --input, no conversion",
    )
    parser.set_defaults(func=run)


def default_data() -> Path:
    """The shipped BTCUSDT 5m candles."""
    return shared_data_dir() / SHARED_BTC_5M


def validation_rows(data: Path, names: list[str], interval: str, rows: int) -> npt.NDArray[np.float32]:
    """The newest ``rows`` finite feature rows of ``data`` in the order ``names``."""
    import pandas as pd

    from model_server.training.dataset import feature_rows
    from xylen.data.inputs import read_input
    from xylen.features import feature_specs

    if data.suffix.lower() == ".parquet":
        frame = pd.read_parquet(data)
        if set(names) <= set(frame.columns):
            matrix = frame[names].to_numpy(np.float32)
            matrix = matrix[np.isfinite(matrix).all(axis=1)][-rows:]
            return np.ascontiguousarray(matrix)
    candles = read_input(str(data), None)
    engine = [s.name for s in feature_specs(interval)]
    if names != engine and len(names) != len(engine):
        raise UsageError(f"the model has {len(names)} features; the feature engine makes {len(engine)}")
    return feature_rows(candles, interval, rows)


def run(args: argparse.Namespace) -> int:
    """Convert, then (with ``--validate``) check parity; exit 1 when it fails."""
    import lightgbm as lgb

    from model_server.convert_to_onnx import convert_file, validate_parity

    source = Path(args.input)
    if not source.is_file():
        raise UsageError(f"--input: file not found: {source}")
    if args.rows < 1:
        raise UsageError(f"--rows must be >= 1, got {args.rows}")
    data = Path(args.data) if args.data else default_data()
    if (args.validate or args.check_only) and not data.is_file():
        raise UsageError(f"--data: file not found: {data}")
    try:
        booster = lgb.Booster(model_file=str(source))
    except lgb.basic.LightGBMError as exc:
        raise DataError(f"{source}: not a LightGBM model: {exc}") from exc
    if args.check_only:
        if not Path(args.output).is_file():
            raise UsageError(f"--output: file not found: {args.output}")
    else:
        convert_file(source, Path(args.output), args.precision)
        trees, features = booster.num_trees(), booster.num_feature()
        print(f"wrote {args.output} ({args.precision}, {trees} trees, {features} features)")
    if not (args.validate or args.check_only):
        return 0
    x = validation_rows(data, booster.feature_name(), args.interval, args.rows)
    if len(x) < args.rows:
        logger.warning("only %d real rows available (asked for %d)", len(x), args.rows)
    try:
        report = validate_parity(booster, Path(args.output), x)
    except Exception as exc:  # onnxruntime raises its own types for a model that does not fit
        print(f"parity FAIL: {exc}")
        return 1
    print(report.format())
    return 0 if report.passed else 1
