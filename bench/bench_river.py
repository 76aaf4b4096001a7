"""River's prequential log-loss per window beside the constant's, replaying real 5m candles.

``python bench/bench_river.py [--data FILE] [--rows N] [--window 5000] [--delay 12] [--batch 32]``:
the candles (default: the shipped BTCUSDT 5m perpetual) are replayed in time order as the
coordinator sees them: each candle is answered by a fresh River model, its label
(``close[t + 12] > close[t]``) is delivered 12 candles later, and outcomes are learned in
``/retrain`` batches of 32.  For every window of answers it prints River's mean log-loss (nats),
the constant's (the running base rate), their difference, and the answers outside [0.05, 0.95];
then the worst window, the mean difference and the share of extreme answers, against the goal
(every window within 0.002 nats of the constant, under 0.1 % extreme answers).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from model_server.online import labelled_rows, replay
from model_server.predictors.river import RiverPredictor
from model_server.registry import default_river_metadata
from xylen.data.importers import read_freqtrade_feather
from xylen.paths import SHARED_BTC_5M, shared_data_dir

MAX_EXCESS = 0.002
MAX_EXTREME = 0.001


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=None, help="freqtrade feather file of 5m candles")
    parser.add_argument("--rows", type=int, default=0, help="replay only the first N labelled rows (0: all)")
    parser.add_argument("--window", type=int, default=5000)
    parser.add_argument("--delay", type=int, default=12, help="candles until a label is known")
    parser.add_argument("--batch", type=int, default=32, help="outcomes per /retrain post")
    args = parser.parse_args(argv)
    path = args.data or shared_data_dir() / SHARED_BTC_5M
    rows, labels = labelled_rows(read_freqtrade_feather(path), horizon=args.delay)
    if args.rows:
        rows, labels = rows[: args.rows], labels[: args.rows]
    predictor = RiverPredictor.fresh(default_river_metadata())
    started = time.perf_counter()
    result = replay(predictor, rows, labels, delay=args.delay, batch=args.batch)
    elapsed = time.perf_counter() - started
    print(f"River prequential replay of {path.name}: {len(rows):,} answers, {elapsed:.1f} s")
    print(f"{'window':>8} {'river':>8} {'constant':>9} {'excess':>8} {'extreme':>8}")
    windows = result.windows(args.window)
    for w in windows:
        print(f"{w.start:>8,} {w.model:>8.4f} {w.constant:>9.4f} {w.excess:>+8.4f} {w.extreme:>8}")
    if not windows:
        print("fewer answers than one window")
        return 1
    worst = max(w.excess for w in windows)
    mean = sum(w.excess for w in windows) / len(windows)
    ok = worst <= MAX_EXCESS and result.extreme_share < MAX_EXTREME
    print(
        f"worst window {worst:+.4f} nats (goal <= +{MAX_EXCESS}), mean {mean:+.4f}, "
        f"extreme answers {result.extreme_share:.3%} (goal < {MAX_EXTREME:.1%}), "
        f"answering from the model at the end: {predictor.answering} -> {'OK' if ok else 'GOAL MISSED'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
