"""The online learner does no harm: replayed on the shipped BTC 5m candles in time order, with the
coordinator's label delay (12 candles) and its /retrain batches (32 outcomes), River's answers are
never more than 0.002 nats worse than the running base rate over any 5,000-answer window, and
almost never extreme; it answers the base rate until it has shown skill, and answers from the
model once it has."""

from __future__ import annotations

import functools
import random
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from model_server.online import BaseRate, PlattCalibrator, labelled_rows, log_loss, replay
from model_server.predictors.river import OnlineConfig, RiverPredictor
from model_server.registry import canary_check, default_river_metadata
from xylen.data.importers import read_freqtrade_feather

# six 5,000-answer windows (about 3.5 months, 10-20 s) from a fresh model, starting 20,000 candles
# into the data: they hold the hardest stretch of the full replay, a window where the market
# stops rewarding what the model learned just before (a calibrator shrunk less, with a prior
# worth 1,000 outcomes instead of 4,000, loses 0.0028 nats there)
REPLAY_START = 20_000
REPLAY_ROWS = 30_000
WINDOW = 5000
MAX_EXCESS = 0.002  # nats per answer above the constant
MAX_EXTREME = 0.001  # share of answers outside [0.05, 0.95]


@functools.lru_cache(maxsize=1)
def real_rows(path: Path) -> tuple[list[dict[str, float]], npt.NDArray[np.int8]]:
    return labelled_rows(read_freqtrade_feather(path), horizon=12)


def test_replay_of_real_data_stays_within_the_constant(btc_5m_path: Path) -> None:
    rows, labels = real_rows(btc_5m_path)
    predictor = RiverPredictor.fresh(default_river_metadata())
    part = slice(REPLAY_START, REPLAY_START + REPLAY_ROWS)
    result = replay(predictor, rows[part], labels[part], delay=12, batch=32)
    windows = result.windows(WINDOW)
    assert len(windows) == REPLAY_ROWS // WINDOW
    report = [(w.start, round(w.model, 4), round(w.constant, 4)) for w in windows]
    assert all(w.excess <= MAX_EXCESS for w in windows), report
    assert result.extreme_share < MAX_EXTREME, result.extreme_share
    # the learner's own record agrees with the replay: it scored every outcome it learned
    assert predictor.n_learned == predictor.served.count >= REPLAY_ROWS - 12 - 32
    served, constant = predictor.served.model, predictor.served.constant
    assert served is not None and constant is not None and served <= constant + MAX_EXCESS


def test_answers_the_base_rate_until_it_has_learned_enough(btc_5m_path: Path) -> None:
    rows, labels = real_rows(btc_5m_path)
    predictor = RiverPredictor.fresh(default_river_metadata())
    base = BaseRate()
    for row, label in zip(rows[:1500], labels[:1500], strict=True):
        predictor.learn_one(row, int(label))
        base.update(int(label))
    probs = predictor.predict_many(rows[2000:2200])
    assert np.ptp(probs) == 0.0 and probs[0] == pytest.approx(base.rate)
    assert not predictor.answering and not predictor.fitted
    assert canary_check(predictor, rows[2000:2200]) == 200  # a constant answer is not refused here


def test_labels_without_signal_keep_the_base_rate(btc_5m_path: Path) -> None:
    """Real feature rows, labels shuffled away from them: nothing to learn, so nothing is claimed."""
    rows, labels = real_rows(btc_5m_path)
    shuffled = [int(v) for v in labels[:12_000]]
    random.Random(3).shuffle(shuffled)
    predictor = RiverPredictor.fresh(default_river_metadata())
    result = replay(predictor, rows[:12_000], shuffled)
    assert all(w.excess <= MAX_EXCESS for w in result.windows(4000))
    assert result.extreme_share == 0.0
    assert not predictor.answering


def test_answers_from_the_model_once_it_has_skill(btc_5m_path: Path) -> None:
    """Real feature rows with a learnable label (RSI above 50, 20 % flipped): the model must win."""
    rows, _ = real_rows(btc_5m_path)
    rng = random.Random(5)
    labels = [int((r["rsi_14"] > 50) != (rng.random() < 0.2)) for r in rows[:8000]]
    predictor = RiverPredictor.fresh(default_river_metadata())
    result = replay(predictor, rows[:8000], labels)
    assert predictor.answering and predictor.fitted
    last = result.windows(2000)[-1]
    assert last.model < last.constant - 0.05, last
    probs = predictor.predict_many(rows[9000:9500])
    truth = np.array([r["rsi_14"] > 50 for r in rows[9000:9500]])
    assert probs[truth].mean() > 0.55 and probs[~truth].mean() < 0.45
    assert ((probs > 0.0) & (probs < 1.0)).all()


def test_calibrator_is_shrunk_toward_the_base_rate() -> None:
    """Few outcomes of pure noise: the calibrated answer stays within a hair of the base rate."""
    rng = np.random.default_rng(11)
    calib = PlattCalibrator(size=500, prior_outcomes=1000.0)
    for _ in range(300):
        calib.add(float(rng.normal(0, 4)), int(rng.random() < 0.6))
    calib.refit(base_logit=float(np.log(0.6 / 0.4)))
    for z in (-50.0, -3.0, 0.0, 3.0, 50.0):
        p = 1.0 / (1.0 + np.exp(-calib.calibrated_logit(z)))
        assert abs(p - 0.6) < 0.05, (z, p)


def test_state_survives_save_and_load(btc_5m_path: Path, tmp_path: Path) -> None:
    rows, _ = real_rows(btc_5m_path)
    rng = random.Random(5)
    labels = [int((r["rsi_14"] > 50) != (rng.random() < 0.2)) for r in rows[:3000]]
    predictor = RiverPredictor.fresh(default_river_metadata())
    for row, label in zip(rows[:3000], labels, strict=True):
        predictor.learn_one(row, label)
    predictor.save(tmp_path)
    loaded = RiverPredictor.load(tmp_path)
    assert loaded.answering == predictor.answering and loaded.n_learned == 3000
    assert loaded.served.model == predictor.served.model
    np.testing.assert_array_equal(
        loaded.predict_many(rows[5000:5100]), predictor.predict_many(rows[5000:5100])
    )
    loaded.learn_one(rows[3000], 1)
    assert predictor.n_learned == 3000  # independent copies


def test_log_loss_of_certain_answers_is_finite() -> None:
    assert log_loss(1.0, 0) == pytest.approx(34.5, abs=0.1)
    assert log_loss(0.5, 1) == pytest.approx(np.log(2))


def test_config_can_open_the_gate_at_once(btc_5m_path: Path) -> None:
    rows, labels = real_rows(btc_5m_path)
    predictor = RiverPredictor.fresh(
        default_river_metadata(), config=OnlineConfig(min_outcomes=0, margin=-1.0)
    )
    for row, label in zip(rows[:64], labels[:64], strict=True):
        predictor.learn_one(row, int(label))
    assert predictor.answering and np.ptp(predictor.predict_many(rows[100:200])) > 0


def test_score_one_gives_the_answer_and_the_learners_own_probability(btc_5m_path: Path) -> None:
    """``raw_score`` of /predict is the learner's uncalibrated log-odds, even while it answers the
    base rate; ``prob_up`` is the served answer."""
    rows, labels = real_rows(btc_5m_path)
    predictor = RiverPredictor.fresh(default_river_metadata())
    for row, label in zip(rows[:1000], labels[:1000], strict=True):
        predictor.learn_one(row, int(label))
    scores = [predictor.score_one(r) for r in rows[2000:2050]]
    served = {s for s, _ in scores}
    raw = [r for _, r in scores]
    assert served == {predictor.predict_one(rows[2000])}  # the base rate, for every row
    assert np.ptp(raw) > 0.0
