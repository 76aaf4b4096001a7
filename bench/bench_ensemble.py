"""Time of one ``Ensemble.decide()`` with 10 votes from calibrated models.

``python bench/bench_ensemble.py [--runs N]``: ten models, each with an isotonic calibrator fitted
on 2000 simulated outcomes (so the hot path is ``numpy.interp`` on stored thresholds), then ``N``
calls of ``decide()`` with ten votes carrying brackets.  Prints the median and p99 in microseconds,
for log-odds aggregation and, separately, with the LightGBM meta-learner switched on.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from coordinator.ensemble import Action, Ensemble, Market, Outcome, Vote
from xylen.config.schema import EnsembleConfig, TradingConfig

T0 = 1_700_000_000_000
STEP = 300_000
MODELS = [f"host-{i}/lgbm" for i in range(10)]


def trained_ensemble(meta: bool) -> Ensemble:
    """An ensemble whose ten models are calibrated (and, with ``meta``, a fitted stacker)."""
    config = EnsembleConfig(
        quorum=3, calibration_min_samples=200, calibration_refit_hours=24, meta_learner=meta
    )
    ens = Ensemble(config, TradingConfig(), dict.fromkeys(MODELS, 1.0), meta_min_samples=1000)
    rng = np.random.default_rng(0)
    for i in range(2000):
        p = rng.uniform(0.3, 0.7)
        probs = {m: float(np.clip(p + rng.normal(0, 0.05 * (k + 1)), 0, 1)) for k, m in enumerate(MODELS)}
        ens.observe(Outcome(T0 + i * STEP, int(rng.random() < p), probs, Market(T0, 100.0, atr=0.5)))
    if meta:
        ens.meta.active = ens.meta.model_text is not None  # time the stacker even if it did not win here
    return ens


def measure(ens: Ensemble, runs: int) -> list[float]:
    """Microseconds of each ``decide()`` over ``runs`` calls with varying votes."""
    rng = np.random.default_rng(1)
    cases = []
    for _ in range(64):
        p = rng.uniform(0.3, 0.7)
        votes = [
            Vote(m, float(np.clip(p + rng.normal(0, 0.05), 0, 1)), Action.LONG, 99.0, 101.5, 1.0)
            for m in MODELS
        ]
        cases.append(votes)
    market = Market(T0, 100.0, funding_rate=1e-4, atr=0.5)
    timings = []
    for n in range(runs):
        votes = cases[n % len(cases)]
        start = time.perf_counter()
        ens.decide(votes, market)
        timings.append((time.perf_counter() - start) * 1e6)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20_000)
    args = parser.parse_args()
    for label, meta in (("log-odds", False), ("meta-learner", True)):
        ens = trained_ensemble(meta)
        assert all(c.calibrator is not None for c in ens.calibrations.values())
        timings = sorted(measure(ens, args.runs))
        p99 = timings[int(0.99 * (len(timings) - 1))]
        print(
            f"decide() with 10 calibrated votes, {label}: median {statistics.median(timings):.1f} us, "
            f"p99 {p99:.1f} us over {args.runs} runs"
        )


if __name__ == "__main__":
    main()
