"""``xylen features``: compute the feature set of a candle file or stored series to Parquet.

Input forms: ``.parquet``, ``.feather``, ``.csv`` (binance.vision kline CSV or a table with
``open_time``/``date`` and OHLCV columns), a binance.vision ``.zip``, or
``store:MARKET/SYMBOL/INTERVAL`` read from the candle store under the home folder.
The output is written to a temporary file next to it and moved into place (atomic).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from xylen.data.inputs import read_input
from xylen.data.schema import infer_interval
from xylen.errors import UsageError
from xylen.fileio import atomic_write_parquet


def register(sub: Any) -> None:
    """Add the ``features`` subcommand to the top-level subparsers."""
    parser = sub.add_parser(
        "features",
        help="compute model features from candles",
        description="Compute the versioned feature set (float32 Parquet) from candles.",
    )
    parser.add_argument(
        "--input", required=True, help="candles: .parquet/.feather/.csv/.zip or store:um/BTCUSDT/5m"
    )
    parser.add_argument("--output", required=True, help="feature Parquet file to write")
    parser.add_argument("--interval", default=None, help="base interval (default: inferred from open times)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Read candles, compute features, write Parquet, print a one-line summary."""
    from xylen.features import FEATURE_VERSION, compute_features, feature_metadata

    started = time.perf_counter()
    candles = read_input(args.input, getattr(args, "home", None))
    open_time = candles["open_time"].to_numpy(np.int64)
    interval = args.interval or infer_interval(open_time)
    try:
        features = compute_features(candles, interval)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    atomic_write_parquet(features, Path(args.output), metadata=feature_metadata(interval))
    elapsed = time.perf_counter() - started
    print(
        f"wrote {args.output}: {len(features):,} rows x {features.shape[1] - 1} features "
        f"(version {FEATURE_VERSION}, interval {interval}) in {elapsed:.2f} s"
    )
    return 0
