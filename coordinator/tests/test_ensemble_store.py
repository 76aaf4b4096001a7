"""Restart: weights, calibrators, tracking and the meta-learner survive closing and reopening SQLite.

One ensemble runs in memory over the whole (simulated) outcome stream; a second runs with a store,
is closed half-way, and a third is reopened from the file and fed the rest.  Their decisions, weights
and stats are identical, at the restart point and at the end.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from coordinator.ensemble import Action, Ensemble, EnsembleStore, Market, Outcome, Vote
from coordinator.storage.db import init_db, latest_version
from xylen.config.schema import EnsembleConfig, TradingConfig

T0 = 1_700_000_000_000
STEP = 300_000
PRIORS = {"a": 1.0, "b": 2.0, "c": 1.0}
CONFIG = EnsembleConfig(calibration_refit_hours=12, calibration_min_samples=200, meta_learner=True, quorum=2)


def outcomes(n: int) -> list[Outcome]:
    rng = np.random.default_rng(42)
    out = []
    for i in range(n):
        p = rng.uniform(0.3, 0.7)
        probs = {"a": p, "b": rng.uniform(0.3, 0.7), "c": float(np.clip(p + rng.normal(0, 0.1), 0, 1))}
        if i % 7 == 0:
            del probs["c"]  # a missing vote now and then
        market = Market(T0 + i * STEP - 3_600_000, 100.0, funding_rate=1e-4, atr=0.4 + 0.4 * (i % 2))
        out.append(Outcome(T0 + i * STEP, int(rng.random() < p), probs, market))
    return out


def probes() -> list[tuple[list[Vote], Market]]:
    out = []
    for pa, pb, pc in [(0.7, 0.6, 0.68), (0.3, 0.45, 0.35), (0.55, 0.5, 0.52), (0.8, 0.2, 0.6)]:
        votes = [
            Vote("a", pa, Action.LONG, 99.0, 101.5),
            Vote("b", pb, Action.LONG, 99.2, 101.0),
            Vote("c", pc),
        ]
        out.append((votes, Market(T0, 100.0, funding_rate=1e-4, atr=0.5)))
    return out


def state(ens: Ensemble) -> tuple[object, ...]:
    decisions = tuple(ens.decide(v, m) for v, m in probes())
    return decisions, ens.weights(), ens.stats(), ens.meta.active, ens.meta.model_text


def test_restart_resumes_identically(tmp_path: Path) -> None:
    stream = outcomes(2400)
    half = 1200
    memory = Ensemble(CONFIG, TradingConfig(), PRIORS, meta_min_samples=600)
    for o in stream[:half]:
        memory.observe(o)

    path = tmp_path / "xylen.db"
    store = EnsembleStore.open(path, synchronous="NORMAL")
    first = Ensemble(CONFIG, TradingConfig(), PRIORS, store=store, meta_min_samples=600)
    for o in stream[:half]:
        first.observe(o)
    before = state(first)
    store.close()

    store = EnsembleStore.open(path, synchronous="NORMAL")
    second = Ensemble(CONFIG, TradingConfig(), PRIORS, store=store, meta_min_samples=600)
    assert state(second) == before == state(memory)
    assert all(cal.calibrator is not None for cal in second.calibrations.values())
    assert second.meta.evaluation is not None

    for o in stream[half:]:
        memory.observe(o)
        second.observe(o)
    assert state(second) == state(memory)
    print("\nweights after 2400 outcomes:", {m: round(w, 4) for m, w in second.weights().items()})
    print(
        "stats:",
        {
            m: (s.n, round(s.hit_rate, 3), round(s.log_loss, 4), round(s.ece, 4))
            for m, s in second.stats().items()
        },
    )
    history = store.weight_history("a")
    assert len(history) >= 2400 * STEP // 3_600_000 and all(0 <= w <= 1 for _, _, w, _ in history)
    store.close()


def test_restart_between_scheduled_pool_refits_resumes_identically(tmp_path: Path) -> None:
    """A restart 4 outcomes after a scheduled refit of the pool (every 7), the window (300) turned:
    the reopened ensemble refits the window as it was then and tracks the 4 since, as the live one did."""
    config = CONFIG.model_copy(update={"pool_refit_every": 7, "meta_learner": False})
    stream = outcomes(1300)
    half = 7 * 130 + 4
    memory = Ensemble(config, TradingConfig(), PRIORS, window=300)
    store = EnsembleStore.open(tmp_path / "xylen.db", synchronous="NORMAL")
    first = Ensemble(config, TradingConfig(), PRIORS, store=store, window=300)
    for o in stream[:half]:
        memory.observe(o)
        first.observe(o)
    store.close()
    store = EnsembleStore.open(tmp_path / "xylen.db", synchronous="NORMAL")
    second = Ensemble(config, TradingConfig(), PRIORS, store=store, window=300)
    assert second.pool_outcomes == half and second.pool_calibration.fits == 1
    # the same map and Hessian, after one fit instead of 130
    assert second.pool_calibration == replace(memory.pool_calibration, fits=1)
    assert second.quality() == memory.quality() and state(second) == state(memory)
    for o in stream[half:]:
        memory.observe(o)
        second.observe(o)
    assert state(second) == state(memory)
    store.close()


def test_migration_creates_the_ensemble_tables(tmp_path: Path) -> None:
    conn = init_db(tmp_path / "m.db")
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {
        "ensemble_outcomes",
        "ensemble_models",
        "ensemble_state",
        "ensemble_meta_rows",
        "ensemble_weight_history",
        "ensemble_refits",
    } <= tables
    assert conn.execute("PRAGMA user_version").fetchone()[0] == latest_version()
    conn.close()
