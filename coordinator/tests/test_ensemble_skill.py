"""The ensemble weighs skill, not noise: twins, the base rate in the pool, the pool's recalibration.

Labels are REAL: BTCUSDT 5m closes of the shared data, ``close[t + 12] > close[t]`` (the coordinator's
label), one outcome per 5 minutes from row 20,000 on.  The models are made up around those labels:
``noise`` answers U(0.45, 0.55) independently of the market (no skill), ``loud`` is a 12-bar
momentum signal pushed to over-confidence (worse than the constant on these data), ``skilled``
peeks at the label with a small, noisy tilt (real skill, known by construction).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.typing import NDArray

from coordinator.ensemble import Ensemble, Market, Outcome, Vote
from coordinator.ensemble.pool import PoolCalibration
from coordinator.ensemble.weighting import BASE_RATE
from coordinator.feed_models import BeatMessage, EnsembleQualityView
from coordinator.metrics import Metrics
from xylen.config.schema import EnsembleConfig, TradingConfig

STEP = 300_000
IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]
Labels = tuple[IntArray, FloatArray, int]
HORIZON = 12


@pytest.fixture(scope="module")
def labels(btc_5m_path: Path) -> Labels:
    df = pd.read_feather(btc_5m_path)
    close = df["close"].to_numpy(dtype=np.float64)[20_000:26_000]
    y = (close[HORIZON:] > close[:-HORIZON]).astype(np.int64)
    mom = np.zeros(len(y))
    mom[HORIZON:] = np.log(close[HORIZON : len(y)] / close[: len(y) - HORIZON])
    t0 = int(pd.Timestamp(df["date"].iloc[20_000]).value // 1_000_000)
    return y, mom, t0


def replay(ens: Ensemble, y: IntArray, mom: FloatArray, t0: int, n: int, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    for i in range(n):
        probs = {
            "noise": float(rng.uniform(0.45, 0.55)),
            "loud": float(1.0 / (1.0 + math.exp(-np.clip(400.0 * mom[i], -4.0, 4.0)))),
        }
        ts = t0 + (i + HORIZON) * STEP
        ens.observe(Outcome(ts, int(y[i]), probs, Market(ts - HORIZON * STEP, 100.0), decision_ms=ts))


def test_models_without_skill_get_almost_no_weight_and_the_pool_answers_the_base_rate(
    labels: Labels,
) -> None:
    y, mom, t0 = labels
    ens = Ensemble(EnsembleConfig(calibration_min_samples=200), TradingConfig(), {"noise": 1.0, "loud": 1.0})
    replay(ens, y, mom, t0, 4000)
    w = ens.weights(["noise", "loud"])
    q = ens.quality()
    print(
        f"\nweights {w}; ensemble log-loss {q.log_loss:.5f}"
        f" vs constant {q.constant_log_loss:.5f}, ece {q.ece:.4f}"
    )
    assert w["noise"] < 0.1 and w["loud"] < 0.1 and w[BASE_RATE] > 0.8
    base = ens.weighting.base_rate
    d = ens.decide([Vote("noise", 0.55), Vote("loud", 0.95)], Market(t0, 100.0))
    assert abs(d.probability - base) < 0.02  # the votes barely move the base rate
    assert q.n == 4000 and q.log_loss <= q.constant_log_loss + 0.002
    assert q.ece < 0.03


def test_a_model_without_outcomes_starts_small_not_equal() -> None:
    ens = Ensemble(EnsembleConfig(), TradingConfig(), {"a": 1.0, "b": 1.0})
    w = ens.weights(["a", "b"])
    assert w["a"] == w["b"] < 0.1 and w[BASE_RATE] > 0.8
    d = ens.decide([Vote("a", 0.8), Vote("b", 0.8)], Market(0, 100.0))
    assert d.probability < 0.56 and math.isclose(sum(v.weight for v in d.votes) + d.base_weight, 1.0)


def test_skill_earns_weight_on_real_labels(labels: Labels) -> None:
    y, _mom, t0 = labels
    ens = Ensemble(EnsembleConfig(), TradingConfig(), {"skilled": 1.0, "noise": 1.0})
    rng = np.random.default_rng(5)
    for i in range(3000):
        tilt = 0.06 * (2 * int(y[i]) - 1) + rng.normal(0.0, 0.05)
        probs = {"skilled": float(0.5 + tilt), "noise": float(rng.uniform(0.45, 0.55))}
        ts = t0 + (i + HORIZON) * STEP
        ens.observe(Outcome(ts, int(y[i]), probs, Market(ts, 100.0), decision_ms=ts))
    w = ens.weights(["skilled", "noise"])
    q = ens.quality()
    print(f"\nweights {w}; skill {q.log_loss_skill:.4f} nats, ece {q.ece:.4f}")
    assert w["skilled"] > 0.9 and w["noise"] < 0.02
    assert q.log_loss_skill > 0.005


def test_twins_share_one_weight_and_count_once() -> None:
    config = EnsembleConfig(quorum=2)
    twins = Ensemble(config, TradingConfig(), {"lgbm": 1.0, "onnx": 1.0, "river": 1.0})
    single = Ensemble(config, TradingConfig(), {"lgbm": 1.0, "river": 1.0})
    rng = np.random.default_rng(2)
    for i in range(600):
        p, r = float(rng.uniform(0.3, 0.7)), float(rng.uniform(0.3, 0.7))
        label = int(rng.random() < p)
        market = Market(i * STEP, 100.0)
        twins.observe(
            Outcome.from_votes(
                [
                    Vote("lgbm", p, fingerprint="gbdt:v1"),
                    Vote("onnx", p, fingerprint="gbdt:v1"),
                    Vote("river", r),
                ],
                market,
                label,
                i * STEP + 3_600_000,
            )
        )
        single.observe(
            Outcome.from_votes(
                [Vote("lgbm", p, fingerprint="gbdt:v1"), Vote("river", r)],
                market,
                label,
                i * STEP + 3_600_000,
            )
        )
    votes = [
        Vote("lgbm", 0.6, fingerprint="gbdt:v1"),
        Vote("onnx", 0.6, fingerprint="gbdt:v1"),
        Vote("river", 0.4),
    ]
    d2 = twins.decide(votes, Market(0, 100.0))
    d1 = single.decide([votes[0], votes[2]], Market(0, 100.0))
    assert d2.probability == pytest.approx(d1.probability, abs=1e-12)
    w2 = {v.model_id: v.weight for v in d2.votes}
    w1 = {v.model_id: v.weight for v in d1.votes}
    assert w2["lgbm"] + w2["onnx"] == pytest.approx(w1["lgbm"])
    stats = twins.stats()
    assert stats["gbdt:v1"].members == ("lgbm", "onnx") and stats["gbdt:v1"].n == 600
    assert stats["onnx"].n == 0 and stats["lgbm"].n == 0  # no outcome is counted under a twin's server id
    alone = twins.decide(votes[:2], Market(0, 100.0))  # two servers, one model: below a quorum of 2
    assert "NO_QUORUM" in [r.value for r in alone.reasons]


def test_pool_recalibration_shrinks_an_over_confident_pool_and_holds_without_data() -> None:
    rng = np.random.default_rng(4)
    true_z = rng.normal(0.0, 0.3, 20_000)
    y = (rng.random(20_000) < 1.0 / (1.0 + np.exp(-true_z))).astype(int)
    cal = PoolCalibration(prior_outcomes=1000)
    cal.fit(3.0 * true_z[:50], y[:50])
    assert abs(cal.b - 1.0) < 0.2 and abs(cal.a) < 0.1  # few outcomes: the prior holds
    cal.fit(3.0 * true_z, y)
    assert cal.b == pytest.approx(1 / 3, abs=0.05)  # the pool said 3x what it knew


def test_quality_goes_to_metrics_and_the_beat_feed(labels: Labels) -> None:
    y, mom, t0 = labels
    ens = Ensemble(EnsembleConfig(), TradingConfig(), {"noise": 1.0, "loud": 1.0})
    replay(ens, y, mom, t0, 500)
    d = ens.decide([Vote("noise", 0.5), Vote("loud", 0.6)], Market(t0, 100.0))
    assert d.quality is not None and d.quality.n == 500
    metrics = Metrics()
    metrics.set_ensemble_quality(d.quality, {"noise": 0.01, BASE_RATE: 0.98})
    get = metrics.registry.get_sample_value
    assert get("xylen_ensemble_log_loss_nats", {"predictor": "ensemble"}) == d.quality.log_loss
    assert get("xylen_ensemble_log_loss_nats", {"predictor": "constant"}) == d.quality.constant_log_loss
    assert get("xylen_ensemble_ece") == d.quality.ece and get("xylen_ensemble_outcomes") == 500
    assert get("xylen_ensemble_weight", {"model": BASE_RATE}) == 0.98
    view = EnsembleQualityView.from_decision(d)
    assert view is not None and view.weights[BASE_RATE] == d.base_weight
    beat = BeatMessage.model_validate_json(BeatMessage(ts=1, ensemble=view).model_dump_json())
    assert beat.ensemble is not None and beat.ensemble.log_loss_skill == pytest.approx(
        d.quality.log_loss_skill
    )
