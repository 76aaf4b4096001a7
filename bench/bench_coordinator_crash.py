"""Crash benchmark of the coordinator process: kill ``xylen run`` itself while it trades, 100 times.

Run: ``python bench/bench_coordinator_crash.py [--trials N] [--seed S] [--speed X] [--data DIR]
[--scenarios kill,restore,sigterm,foreign] [--keep DIR]``.

The paper exchange (``xylen paper-exchange``, real BTCUSDT 5m candles from ``--data`` or
``$XYLEN_SHARED_DATA``, default ``../shared/data``), a LightGBM model server and the coordinator run
as processes on 127.0.0.1, the coordinator on the accelerated clock at the replay's speed with
``xylen demo --show-trades``'s config, MARKET entries and close brackets, so it trades every few
beats.  Each trial kills the coordinator at a random moment (or the moment it writes a new entry),
compares the venue with its SQLite journal before any repair, restarts it, and compares again after
its reconciliation and one monitor round (``tests/crash_support.py`` says exactly what is counted).
The ``--trials`` are split over the scenarios: 70 % plain SIGKILL, the rest evenly between restoring
a backup then restarting, SIGTERM while a stop is in flight (the exchange delays
``/fapi/v1/algoOrder`` by 1.5 s), and another client using 35 weight a second on the IP.

Lost, phantom, duplicated, unprotected after restart and missing refusals must all be 0; the exit
status is 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from crash_support import SCENARIOS, Figures, prepare_model, run_scenario, work_dir  # noqa: E402

from xylen.data import CandleStore  # noqa: E402
from xylen.data.importers import import_file  # noqa: E402
from xylen.paths import SHARED_BTC_5M, shared_data_dir  # noqa: E402


def split(trials: int, scenarios: list[str]) -> dict[str, int]:
    """70 % of the trials to plain kills (when chosen), the rest evenly, each chosen scenario >= 1."""
    if scenarios == ["kill"]:
        return {"kill": trials}
    others = [s for s in scenarios if s != "kill"]
    kills = round(trials * 0.7) if "kill" in scenarios else 0
    each, extra = divmod(trials - kills, len(others))
    plan = {s: max(1, each + (i < extra)) for i, s in enumerate(others)}
    if "kill" in scenarios:
        plan = {"kill": max(1, trials - sum(plan.values())), **plan}
    return plan


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--trials", type=int, default=100, help="kills over all scenarios (default 100)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--speed", type=float, default=600.0, help="replay and clock speed (default 600)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"default {','.join(SCENARIOS)}")
    parser.add_argument("--data", default=None, help="shared data folder (default $XYLEN_SHARED_DATA)")
    parser.add_argument("--keep", type=Path, default=None, help="work folder kept afterwards (logs)")
    args = parser.parse_args()
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(scenarios) - set(SCENARIOS)
    if unknown or not scenarios:
        parser.error(f"--scenarios: unknown {sorted(unknown)} (choose from {', '.join(SCENARIOS)})")
    if args.trials < len(scenarios) or args.speed <= 0:
        parser.error("--trials must be at least one per scenario and --speed positive")
    source = shared_data_dir(args.data) / SHARED_BTC_5M
    if not source.is_file():
        print(
            f"bench_coordinator_crash: {source} not found (set --data or XYLEN_SHARED_DATA)", file=sys.stderr
        )
        return 2
    plan = split(args.trials, scenarios)
    total = Figures()
    expected = 0
    started = time.monotonic()
    with work_dir(args.keep) as root:
        candles = root / "candles"
        if not candles.exists():
            import_file(source, CandleStore(candles))
        model = prepare_model(source, root / "model")
        print(f"coordinator crash test: {plan} at x{args.speed:g}", flush=True)
        for index, (scenario, trials) in enumerate(plan.items()):
            figures = run_scenario(
                scenario, trials, root / "runs", candles, model, args.speed, args.seed * 100 + index,
                log=lambda line: print(line, flush=True),
            )  # fmt: skip
            total.add(figures)
            expected += 0 if figures.skipped else trials
    print(f"all scenarios, {total.trials} trials in {time.monotonic() - started:.0f} s: {total.line()}")
    ok = total.failures == 0 and total.trials == expected
    print(
        "lost, phantom, duplicated, unprotected after restart, refusals missing all 0:",
        "yes" if ok else "NO",
    )
    for problem in total.problems[:30]:
        print(f"  {problem}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
