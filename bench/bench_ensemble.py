"""Time of one ``Ensemble.decide()`` and one ``Ensemble.observe()``, lean path beside the plain one.

``python bench/bench_ensemble.py [--runs N]``: ensembles of three and of ten models, each model
with an isotonic calibrator fitted on 2000 simulated outcomes where the out-of-time check accepts
it (so a vote is mapped through stored thresholds), then ``N`` calls of ``decide()`` on votes
carrying brackets.  For each it prints the median and p99 in microseconds of the lean
``decide()`` and of the same pipeline written plainly (``reference_decide`` of
``coordinator/tests/test_ensemble_lean.py``: per-vote ``numpy.interp``, weight dictionaries,
intermediate objects), which gives the same decisions; then ``decide()`` with the LightGBM
meta-learner switched on, and ``observe()`` per outcome with a full pool window (5000 outcomes)
for ``pool_refit_every`` 1 (the pool's recalibration refitted on the window at every outcome) and 32
(the default: refitted every 32nd outcome, tracked in between): median, mean (what a backtest pays
per candle on average, the refits included) and p99.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence

import numpy as np

from coordinator.ensemble import Action, Decision, Ensemble, Market, Outcome, Vote
from coordinator.tests.test_ensemble_lean import reference_decide
from xylen.config.schema import EnsembleConfig, TradingConfig

T0 = 1_700_000_000_000
STEP = 300_000
MODELS = [f"host-{i}/lgbm" for i in range(10)]
THREE = ["lightgbm", "onnx", "river"]


def outcomes(models: Sequence[str], n: int, seed: int = 0) -> list[Outcome]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        p = rng.uniform(0.3, 0.7)
        probs = {m: float(np.clip(p + rng.normal(0, 0.05 * (k + 1)), 0, 1)) for k, m in enumerate(models)}
        out.append(Outcome(T0 + i * STEP, int(rng.random() < p), probs, Market(T0, 100.0, atr=0.5)))
    return out


def trained_ensemble(meta: bool, models: Sequence[str] = MODELS) -> Ensemble:
    """An ensemble whose models are calibrated (and, with ``meta``, a fitted stacker)."""
    config = EnsembleConfig(
        quorum=3, calibration_min_samples=200, calibration_refit_hours=24, meta_learner=meta
    )
    ens = Ensemble(config, TradingConfig(), dict.fromkeys(models, 1.0), meta_min_samples=1000)
    for outcome in outcomes(models, 2000):
        ens.observe(outcome)
    if meta:
        ens.meta.active = ens.meta.model_text is not None  # time the stacker even if it did not win here
    return ens


def measure(
    ens: Ensemble, runs: int, decide: Callable[[Ensemble, Sequence[Vote], Market], Decision]
) -> list[float]:
    """Microseconds of each call of ``decide`` over ``runs`` calls with varying votes."""
    rng = np.random.default_rng(1)
    models = list(ens.priors)
    cases = []
    for _ in range(64):
        p = rng.uniform(0.3, 0.7)
        votes = [
            Vote(m, float(np.clip(p + rng.normal(0, 0.05), 0, 1)), Action.LONG, 99.0, 101.5, 1.0)
            for m in models
        ]
        cases.append(votes)
    market = Market(T0, 100.0, funding_rate=1e-4, atr=0.5)
    timings = []
    for n in range(runs):
        votes = cases[n % len(cases)]
        start = time.perf_counter()
        decide(ens, votes, market)
        timings.append((time.perf_counter() - start) * 1e6)
    return timings


def summary(timings: list[float]) -> str:
    ordered = sorted(timings)
    return (
        f"median {statistics.median(ordered):6.1f} us, p99 {ordered[int(0.99 * (len(ordered) - 1))]:7.1f} us"
    )


def observe_timings(models: Sequence[str], runs: int, every: int) -> list[float]:
    """Microseconds of each ``observe()`` once the pool window (5000) is full, the pool refitted
    every ``every`` outcomes."""
    config = EnsembleConfig(
        quorum=2, calibration_min_samples=200, calibration_refit_hours=24, pool_refit_every=every
    )
    ens = Ensemble(config, TradingConfig(), dict.fromkeys(models, 1.0))
    stream = outcomes(models, 5000 + runs, seed=2)
    for outcome in stream[:5000]:
        ens.observe(outcome)
    timings = []
    for outcome in stream[5000:]:
        start = time.perf_counter()
        ens.observe(outcome)
        timings.append((time.perf_counter() - start) * 1e6)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20_000)
    args = parser.parse_args()
    for models in (THREE, MODELS):
        ens = trained_ensemble(False, models)
        fitted = sum(c.calibrator is not None for c in ens.calibrations.values())
        lean = measure(ens, args.runs, Ensemble.decide)
        plain = measure(ens, args.runs, reference_decide)
        label = f"decide() with {len(models):2d} votes ({fitted} isotonic)"
        print(f"{label}: lean  {summary(lean)} over {args.runs} runs")
        print(f"{label}: plain {summary(plain)} (same decisions)")
    meta = measure(trained_ensemble(True), args.runs, Ensemble.decide)
    print(f"decide() with 10 votes, meta-learner: {summary(meta)}")
    for every in (1, 32):
        runs = max(100, args.runs // (20 if every == 1 else 2))
        timings = observe_timings(THREE, runs, every)
        print(
            f"observe() with 3 models, full pool window, pool_refit_every {every:2d}: {summary(timings)},"
            f" mean {statistics.fmean(timings):6.1f} us over {runs}"
        )


if __name__ == "__main__":
    main()
