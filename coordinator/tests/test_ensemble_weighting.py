"""Bayesian weights: an informative model wins the weight, a swap is followed, and properties hold.

The informative/noise experiment is SIMULATED: a known true probability process ``p_t ~ U(0.3, 0.7)``,
labels ``y_t ~ Bernoulli(p_t)``, one outcome every 5 minutes; the informative model reports ``p_t``,
the noise model an independent ``U(0.3, 0.7)`` draw.  Config: half-life 24 h (= 288 outcomes),
η = 1, calibration after 200 outcomes, refit every 24 h, shrink 0.5.  Stated figures, checked on
10 seeds: the informative model holds > 80 % of the weight by outcome 300, on average > 95 % over
outcomes 300-1500 and > 80 % on at least 90 % of them; after the roles swap at outcome 1500 the new
informative model holds > 80 % within 600 outcomes (about two half-lives) and the same averages
over the following 900.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.ensemble import Action, Ensemble, Market, Outcome, Vote
from coordinator.ensemble.weighting import BASE_RATE, BayesianWeights
from xylen.config.schema import EnsembleConfig, TradingConfig

T0 = 1_700_000_000_000
STEP = 300_000
SWAP = 1500


def run(seed: int) -> np.ndarray:
    config = EnsembleConfig(
        weight_half_life_hours=24,
        calibration_refit_hours=24,
        calibration_min_samples=200,
        uncalibrated_shrink=0.5,
    )
    ens = Ensemble(config, TradingConfig(), {"a": 1.0, "b": 1.0})
    rng = np.random.default_rng(seed)
    # the share of a among the two models (the base rate's share is left out of the comparison)
    weight_a = []
    for i in range(2 * SWAP):
        p, noise = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7)
        y = int(rng.random() < p)
        a, b = (p, noise) if i < SWAP else (noise, p)
        ens.observe(Outcome(T0 + i * STEP, y, {"a": a, "b": b}, Market(T0 + i * STEP - 3_600_000, 100.0)))
        w = ens.weights(["a", "b"])
        weight_a.append(w["a"] / (w["a"] + w["b"]))
    return np.asarray(weight_a)


def test_informative_model_wins_and_swap_is_followed() -> None:
    for seed in range(10):
        wa = run(seed)
        wb = 1.0 - wa
        print(
            f"seed {seed}: w_inf@300 {wa[299]:.3f} mean(300-1500) {wa[300:SWAP].mean():.4f} | "
            f"after swap w_inf@+600 {wb[SWAP + 599]:.3f} mean(+600..+1500) {wb[SWAP + 600 :].mean():.4f}"
        )
        assert wa[299] > 0.8
        assert wa[300:SWAP].mean() > 0.95 and (wa[300:SWAP] > 0.8).mean() >= 0.9
        assert wb[SWAP + 599] > 0.8
        assert wb[SWAP + 600 :].mean() > 0.95 and (wb[SWAP + 600 :] > 0.8).mean() >= 0.9


def test_chance_model_ends_negligible_and_decay_forgets() -> None:
    w = BayesianWeights({"good": 1.0, "chance": 1.0}, half_life_hours=24.0, learning_rate=1.0)
    rng = np.random.default_rng(3)
    for i in range(2000):
        p = rng.uniform(0.2, 0.8)
        w.update(T0 + i * STEP, {"good": p, "chance": 0.5}, int(rng.random() < p))
    print(f"chance-level model weight after 2000 outcomes: {w.weights()['chance']:.2e}")
    assert w.weights()["chance"] < 0.01
    # 10 half-lives without outcomes: losses decay by 2^-10 at the next update, the chance model recovers
    loss_before = w.models["good"].loss
    w.update(T0 + 1999 * STEP + 240 * 3_600_000, {}, 1)
    assert math.isclose(w.models["good"].loss, loss_before * 2.0**-10)
    after = w.weights()
    assert after["chance"] / (after["chance"] + after["good"]) > 0.4


def test_missing_model_is_neutral_and_prior_zero_mutes() -> None:
    w = BayesianWeights({"a": 2.0, "b": 1.0, "m": 0.0}, half_life_hours=24, learning_rate=1.0)
    both = w.weights(["a", "b"])
    assert both["a"] == 2 * both["b"] and math.isclose(math.fsum(both.values()), 1.0)
    assert w.weights(["m"]) == {"m": 0.0, BASE_RATE: 1.0}
    assert w.weights(["a", "m"])["m"] == 0.0 and not w.usable("m")
    rel = w.update(T0, {"a": 0.7}, 1)
    assert set(rel) == {"a"} and w.models["b"].loss == 0.0


probs = st.floats(min_value=0.0, max_value=1.0)
events = st.lists(
    st.tuples(
        st.integers(min_value=-STEP, max_value=10 * 3_600_000),
        st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), probs, max_size=4),
        st.integers(min_value=0, max_value=1),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(events, st.lists(st.sampled_from(["a", "b", "c", "d", "new"]), min_size=1, max_size=5, unique=True))
def test_weights_are_a_distribution(
    sequence: list[tuple[int, dict[str, float], int]], subset: list[str]
) -> None:
    w = BayesianWeights({"a": 1.0, "b": 0.5, "c": 2.0, "d": 1.0}, half_life_hours=2.0, learning_rate=3.0)
    t = T0
    for dt, ps, y in sequence:
        t += dt
        w.update(t, ps, y)
        for ids in (None, subset):
            weights = w.weights(ids)
            assert all(v >= 0.0 and math.isfinite(v) for v in weights.values())
            assert math.isclose(math.fsum(weights.values()), 1.0, rel_tol=1e-9)


vote_prob = st.one_of(probs, st.just(math.nan), st.floats(min_value=-1, max_value=2))
price_offset = st.one_of(st.none(), st.floats(min_value=-5.0, max_value=5.0))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "c", "x"]), vote_prob, price_offset, price_offset), max_size=6
    ),
    st.integers(min_value=1, max_value=4),
    st.floats(min_value=0.0, max_value=0.3),
    st.floats(min_value=-0.003, max_value=0.003),
    st.one_of(st.none(), st.floats(min_value=0.0, max_value=3.0)),
    st.lists(
        st.tuples(st.dictionaries(st.sampled_from(["a", "b", "c"]), probs), st.integers(0, 1)), max_size=30
    ),
)
def test_decide_never_trades_without_quorum_or_edge_after_costs(
    raw_votes: list[tuple[str, float, float | None, float | None]],
    quorum: int,
    min_edge: float,
    funding: float,
    atr: float | None,
    history: list[tuple[dict[str, float], int]],
) -> None:
    config = EnsembleConfig(
        quorum=quorum, min_edge=min_edge, uncalibrated_shrink=1.0, calibration_min_samples=20
    )
    ens = Ensemble(config, TradingConfig(entry="market"), {"a": 1.0, "b": 1.0, "c": 0.5})
    for i, (ps, y) in enumerate(history):
        ens.observe(Outcome(T0 + i * STEP, y, ps, Market(T0, 100.0)))
    votes = [
        Vote(m, p, Action.LONG, None if s is None else 100.0 + s, None if tp is None else 100.0 + tp)
        for m, p, s, tp in raw_votes
    ]
    d = ens.decide(votes, Market(T0, 100.0, funding_rate=funding, atr=atr))
    assert 0.0 < d.probability < 1.0
    assert all(0.0 < v.prob_calibrated < 1.0 for v in d.votes)
    assert math.isclose(sum(v.weight for v in d.votes) + d.base_weight, 1.0)
    if d.action is not Action.HOLD:
        assert d.expected_value_bps > 0.0
        assert len(d.votes) >= quorum
        assert 0.0 < d.size_fraction <= 1.0
    else:
        assert d.reasons and d.size_fraction == 0.0
