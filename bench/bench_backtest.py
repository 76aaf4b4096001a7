"""Benchmark of `xylen backtest`: the full pipeline and the EMA reference, figures as medians.

    python bench/bench_backtest.py [--days 30] [--repeat 1] [--memory-days 60] [--no-memory]

Runs on the shipped BTCUSDT 5m candles (2023-01-01 to 2024-05-14; a span longer than the data is
cut to it, and said so): three small models trained on the candles before the span vote (predicted
ahead), and the whole pipeline runs (ensemble, risk, order state machine, matching, settlement,
journal); then the EMA 9/21 reference through the same engine and through backtesting.py.  Prints
candles per second of each, µs per candle of each stage of the full pipeline, and for the reference
through the engine the time of a candle it acts on (close, settle, entry with its bracket: the order
path's round trip) and of any other candle.

Memory: the peak RSS of a fresh process that loads the inputs (candles, features, recorded votes)
and runs the full pipeline, for ``--memory-days`` and for 3x as many days.  Where the shipped
candles end before a span does, the series is tiled: the real candles repeated end to end, each
copy's prices rescaled so that it opens at the previous copy's last close, its times continuing
(market behaviour does not change what a span holds in memory: candles, features, votes, results).

The default span is 30 days (8,640 candles), not a year: the full pipeline runs about three thousand
candles per second here and the EMA reference under a thousand, so a year (105,000 candles) takes a
few minutes in all; ``make bench`` runs ``--days 365 --memory-days 365`` (one year against three).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# backtesting.py's progress bar would write over the figures (tqdm reads this when imported)
os.environ.setdefault("TQDM_DISABLE", "1")

from backtest import settings
from backtest.data import history_of, load_candles, load_funding_frame
from backtest.ema import EmaCross, cross_signals
from backtest.engine import Run, RunOptions, run_backtest
from backtest.runlog import RunLog
from backtest.votes import TrainSettings, VoteBook, trained_models
from coordinator.risk import AccountView
from coordinator.snapshot import MarketSnapshot
from xylen.peak_memory import peak_rss_mb

DAY_MS = 86_400_000
SYMBOL = "BTCUSDT"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--memory-days", type=float, default=60.0, help="peak memory for this span and 3x it")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory figures")
    parser.add_argument("--rss-child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child is not None:
        return _rss_child(args.rss_child)
    candles, funding_dir = load_candles(SYMBOL)
    funding = load_funding_frame(funding_dir, SYMBOL)
    ot = candles["open_time"].to_numpy(np.int64)
    train_until = int(ot[0]) + 60 * DAY_MS  # the first 60 days train the models
    end = min(int(ot[-1]), train_until + int(args.days * DAY_MS))
    if end < train_until + int(args.days * DAY_MS):
        print(
            f"note: the shipped data ends before {args.days:g} days;"
            f" the span is cut to {(end - train_until) / DAY_MS:.1f} days"
        )
    # the runs' order-path warnings go to a log file in the scratch folder, counted at the end
    with tempfile.TemporaryDirectory(prefix="bench-backtest-") as scratch:
        work = Path(scratch)
        with RunLog(work / "backtest.log", logging.WARNING) as log:
            _measure(args, candles, funding, train_until, end, work, log)
        print(f"logged by the runs (not shown): {log.warnings} warnings, {log.errors} errors")
    return 0


def _measure(
    args: argparse.Namespace,
    candles: pd.DataFrame,
    funding: pd.DataFrame | None,
    train_until: int,
    end: int,
    work: Path,
    log: RunLog,
) -> None:
    ot = candles["open_time"].to_numpy(np.int64)
    history = history_of(candles, SYMBOL, train_until, end, funding=funding)
    n = history.stop - history.first
    before = candles[candles["open_time"] < train_until - 3_600_000].reset_index(drop=True)
    book = VoteBook(trained_models(before, history, work, TrainSettings(rounds=40, seeds=(1, 2, 3))))
    config = settings.with_models(settings.load(None, SYMBOL), book.model_ids)
    full: list[float] = []
    stages: dict[str, list[float]] = {}
    for _ in range(args.repeat):
        result = asyncio.run(
            run_backtest(config, history, votes=book, options=RunOptions(timing=False, log=log))
        )
        full.append(result.meta["candles_per_s"])
        timed = asyncio.run(
            run_backtest(config, history, votes=book, options=RunOptions(timing=True, log=log))
        )
        for k, v in timed.stage_us.items():
            stages.setdefault(k, []).append(v)
    print(f"span: {n:,} candles of {SYMBOL} 5m ({n * 5 / 1440:.1f} days), {len(result.trades)} trades")
    print(
        f"full pipeline (3 models, ensemble, risk, orders, matching, settlement, journal): "
        f"{statistics.median(full):,.0f} candles/s"
    )
    for stage, values in stages.items():
        print(f"  {stage:<11} {statistics.median(values):10.1f} µs/candle")
    print("  (ensemble: decide() and the learning from each closed outcome; settlement: the trades closed)")
    signals = cross_signals(history.candles["close"].to_numpy())
    signals[: history.first + 1] = 0
    ours: list[float] = []
    theirs: list[float] = []
    acting_ms: list[float] = []
    other_us: list[float] = []
    for _ in range(args.repeat):
        ema = _TimedEma(signals, Decimal("0.01"))
        r = asyncio.run(run_backtest(config, history, strategy=ema, options=RunOptions(log=log)))
        ours.append(r.meta["candles_per_s"])
        acting_ms.append(ema.acting_s * 1e3 / max(1, ema.acting_n))
        other_us.append((r.meta["elapsed_s"] - ema.acting_s) * 1e6 / max(1, n - ema.acting_n))
        theirs.append(_backtesting_py(history.span(), signals[history.first : history.stop]))
    print(
        f"EMA 9/21 reference, xylen backtest: {statistics.median(ours):,.0f} candles/s"
        f" ({len(r.trades)} trades)"
    )
    print(
        f"  a candle with a crossover (close, settle, entry with its bracket):"
        f" {statistics.median(acting_ms):,.2f} ms ({ema.acting_n:,} such candles)"
    )
    print(f"  any other candle (the venue's matching, the account): {statistics.median(other_us):,.0f} µs")
    print(f"EMA 9/21 reference, backtesting.py: {statistics.median(theirs):,.0f} candles/s")
    if not args.no_memory:
        from bench_training import tiled_candles  # beside this script

        rss = []
        for days in (args.memory_days, 3 * args.memory_days):
            stop = train_until + int(days * DAY_MS)
            rows = (stop - int(ot[0])) // (int(ot[1]) - int(ot[0])) + 2  # through the span's end
            series = candles if stop <= int(ot[-1]) else tiled_candles(rows, candles)
            h = history_of(series, SYMBOL, train_until, stop, funding=funding)
            b = VoteBook(
                trained_models(before, h, work / f"m{days}", TrainSettings(rounds=40, seeds=(1, 2, 3)))
            )
            rss.append(_child_peak_rss(work / f"rss{days}.pkl", (config, h, b)))
            tiled = " (tiled)" if series is not candles else ""
            n_days = (h.stop - h.first) * 5 / 1440
            print(f"peak RSS of a process running it, {n_days:,.0f} days{tiled}: {rss[-1]:.0f} MiB")
        print(f"memory ratio, 3x the span: peak RSS {rss[1] / rss[0]:.2f}x")


@dataclass
class _TimedEma(EmaCross):
    """The reference, adding up the time of the candles it acts on (the order path's round trip)."""

    acting_s: float = 0.0
    acting_n: int = 0

    async def on_candle(self, run: Run, i: int, snap: MarketSnapshot, account: AccountView) -> str:
        t0 = time.perf_counter()
        action = await super().on_candle(run, i, snap, account)
        if action != "HOLD":
            self.acting_s += time.perf_counter() - t0
            self.acting_n += 1
        return action


def _child_peak_rss(path: Path, inputs: tuple[Any, ...]) -> float:
    """Peak RSS (MiB) of a fresh process that loads ``inputs`` (config, history, votes) and runs the
    backtest: imports, data and the run, without the training that made the votes."""
    path.write_bytes(pickle.dumps(inputs))
    out = subprocess.run(
        [sys.executable, __file__, "--rss-child", str(path)], capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def _rss_child(path: Path) -> int:
    config, history, book = pickle.loads(path.read_bytes())
    asyncio.run(run_backtest(config, history, votes=book))
    print(peak_rss_mb())
    return 0


def _backtesting_py(span: pd.DataFrame, signals: np.ndarray[Any, Any]) -> float:
    from backtesting import Backtest, Strategy

    frame = pd.DataFrame(
        {
            c.capitalize(): span[c].to_numpy() * (0.01 if c != "volume" else 1.0)
            for c in ("open", "high", "low", "close", "volume")
        },
        index=pd.to_datetime(span["open_time"], unit="ms"),
    )
    frame["Signal"] = signals.astype(float)

    class Cross(Strategy):  # type: ignore[misc]
        def init(self) -> None:
            self.signal = self.I(lambda: self.data.Signal, name="signal")

        def next(self) -> None:
            s = self.signal[-1]
            if s > 0 and not self.position.is_long:
                self.buy(size=1)
            elif s < 0 and not self.position.is_short:
                self.sell(size=1)

    t0 = time.perf_counter()
    with warnings.catch_warnings():  # the position open at the span's end: as in ours, not a trade
        warnings.filterwarnings("ignore", "Some trades remain open", UserWarning)
        Backtest(frame, Cross, cash=1_000_000, commission=0.0005, exclusive_orders=True).run()
    return len(frame) / (time.perf_counter() - t0)


if __name__ == "__main__":
    raise SystemExit(main())
