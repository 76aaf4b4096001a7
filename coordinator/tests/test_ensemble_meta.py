"""The meta-learner is used only while it beats the log-odds average out of time.

Constructed (simulated) situations:

* interaction regime: model ``a`` says ``a_t ~ U(0.3, 0.7)``; the truth is ``a_t`` when ATR is high
  (100 bps) and ``1 - a_t`` when it is low (20 bps); model ``b`` is noise.  Calibration and weights
  cannot see the interaction (``a`` looks useless on average), the stacker with ATR as a feature can:
  after the first walk-forward refit it wins on the holdout and is switched on;
* then the labels become pure noise: once the holdout is noise, the stacker (trained on the older,
  interaction rows) loses to the average and is switched off at the next refit.
"""

from __future__ import annotations

import numpy as np

from coordinator.ensemble import Action, Ensemble, Market, Outcome, Vote
from coordinator.ensemble.ensemble import META_TARGET
from coordinator.ensemble.store import EnsembleStore
from xylen.config.schema import EnsembleConfig, TradingConfig

T0 = 1_700_000_000_000
STEP = 300_000


def config(meta: bool) -> EnsembleConfig:
    # a base rate that follows the simulated labels quickly (a Beta(1, 1) prior, the weights' half-life)
    return EnsembleConfig(
        calibration_refit_hours=24,
        calibration_min_samples=200,
        meta_learner=meta,
        base_rate_prior=2.0,
        base_rate_half_life_hours=72.0,
    )


def feed(ens: Ensemble, rng: np.random.Generator, start: int, n: int, interaction: bool) -> None:
    for i in range(start, start + n):
        a, b = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7)
        high = rng.random() < 0.5
        truth = (a if high else 1 - a) if interaction else 0.5
        market = Market(T0 + i * STEP - 3_600_000, 100.0, atr=1.0 if high else 0.2)
        ens.observe(Outcome(T0 + i * STEP, int(rng.random() < truth), {"a": a, "b": b}, market))


def test_meta_switched_on_when_it_wins_and_off_when_it_stops(tmp_path: object) -> None:
    store = EnsembleStore.open(f"{tmp_path}/meta.db", synchronous="NORMAL")
    ens = Ensemble(
        config(True),
        TradingConfig(),
        {"a": 1.0, "b": 1.0},
        store=store,
        meta_min_samples=1000,
        meta_window=4000,
    )
    rng = np.random.default_rng(0)
    votes = [Vote("a", 0.68, Action.LONG, 98.0, 102.0), Vote("b", 0.5)]
    high, low = Market(T0, 100.0, atr=1.0), Market(T0, 100.0, atr=0.2)

    feed(ens, rng, 0, 2000, interaction=True)
    evaluation = ens.meta.evaluation
    assert evaluation is not None and ens.meta.active
    print(
        f"\ninteraction regime: meta holdout log-loss {evaluation.meta_logloss:.4f} vs "
        f"log-odds {evaluation.baseline_logloss:.4f} -> active"
    )
    assert evaluation.meta_logloss < evaluation.baseline_logloss
    d_high, d_low = ens.decide(votes, high), ens.decide(votes, low)
    assert d_high.source == d_low.source == "meta"
    print(f"meta P(up) for a=0.68: high ATR {d_high.probability:.3f}, low ATR {d_low.probability:.3f}")
    assert d_high.probability > d_low.probability  # the stacker learnt the interaction

    feed(ens, rng, 2000, 2000, interaction=False)
    evaluation = ens.meta.evaluation
    assert evaluation is not None and not ens.meta.active
    print(
        f"noise regime: meta holdout log-loss {evaluation.meta_logloss:.4f} vs "
        f"log-odds {evaluation.baseline_logloss:.4f} -> switched off"
    )
    assert ens.decide(votes, high).source == "pool"
    decisions = [r.accepted for r in store.refits(META_TARGET)]
    assert True in decisions and decisions[-1] is False
    store.close()


def test_meta_never_used_when_disabled() -> None:
    ens = Ensemble(config(False), TradingConfig(), {"a": 1.0, "b": 1.0}, meta_min_samples=1000)
    feed(ens, np.random.default_rng(0), 0, 1500, interaction=True)
    assert not ens.meta.active and ens.meta.evaluation is None
    assert ens.decide([Vote("a", 0.7), Vote("b", 0.5)], Market(T0, 100.0, atr=1.0)).source == "pool"
