"""Crash benchmark of the order manager: SIGKILL a trading worker at random moments, 100 times.

Run: ``python bench/bench_orders_crash.py [--trials N] [--seed S] [--speed X] [--data DIR] [--no-faults]``.

The paper exchange runs as its own process (``python -m paper_exchange``, real BTCUSDT 5m candles
from ``--data`` or ``$XYLEN_SHARED_DATA``, default ``../shared/data``, replayed at ``--speed``).  Each
trial starts a worker (``coordinator.tests.manager_crash_worker``) that reconciles, then places and
closes brackets (MARKET and LIMIT entries, stops and take-profits close to the price so some fire
on the replay), kills it with SIGKILL after a random 0.2-2 s, restarts the manager on the same
SQLite file, reconciles, and checks against the exchange:

- lost: an exchange order (open, open algo, or traded) with our prefix that SQLite does not have;
- duplicated: a second entry for an intent, a client id with two exchange orders, two stops on
  one position;
- unprotected: an open position without a closePosition STOP_MARKET on the exchange (after one
  round of the monitor when a resting LIMIT entry filled between reconciliation and the check).

The exchange runs with replies that may have executed mixed in (``CRASH_FAULTS`` of the worker: 10 %
of placements answered 200 with a truncated body, half of the cancels of resting orders
acknowledged ``CANCELED`` while the order fills, 5 % of order requests answered 503 "Unknown
error" after executing); ``--no-faults`` turns them off.  The figures line says how often the
orders met them.

All three must be 0; the exit status is 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from coordinator.tests.manager_crash_worker import CRASH_FAULTS, run_trials
from xylen.data import CandleStore
from xylen.data.importers import import_file
from xylen.paths import SHARED_BTC_5M, shared_data_dir

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--trials", type=int, default=100, help="kills (default 100)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--speed", type=float, default=300.0, help="replay speed (default 300)")
    parser.add_argument(
        "--data", default=None, help="shared data folder (default $XYLEN_SHARED_DATA or ../shared/data)"
    )
    parser.add_argument(
        "--no-faults",
        action="store_true",
        help="no fault injection (default: replies that may have executed)",
    )
    args = parser.parse_args()
    if args.trials <= 0 or args.speed <= 0:
        parser.error("--trials and --speed must be positive")
    data = shared_data_dir(args.data)
    source = data / SHARED_BTC_5M
    if not source.is_file():
        print(f"bench_orders_crash: {source} not found (set --data or XYLEN_SHARED_DATA)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="xylen-orders-crash-") as tmp:
        work = Path(tmp)
        candles = work / "candles"
        import_file(source, CandleStore(candles))
        started = time.monotonic()
        counts = run_trials(
            args.trials, candles, work / "run", seed=args.seed, speed=args.speed, faults=not args.no_faults
        )
        elapsed = time.monotonic() - started
    mix = "no faults" if args.no_faults else CRASH_FAULTS.strip().replace("\n", ", ")
    print(
        f"order manager crash test: {args.trials} trials in {elapsed:.0f} s (replay x{args.speed:g}; {mix})"
    )
    print(counts.line())
    reconciled = ", ".join(f"{k}={n}" for k, n in sorted(counts.reconciled.items())) or "none"
    print(f"differences resolved by reconciliation after the kills: {reconciled}")
    ok = (counts.lost, counts.duplicated, counts.unprotected) == (0, 0, 0)
    print(f"lost, duplicated, unprotected all 0: {'yes' if ok else 'NO'}")
    for problem in counts.problems[:20]:
        print(f"  {problem}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
