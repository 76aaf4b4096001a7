"""Calibration on REAL data: a LightGBM model on the feature engine's features of Binance BTC 5m.

Label: the close 12 candles (1 h) later is above this close.  Trained on an early period; its
probabilities on two LATER, non-overlapping periods are distorted (``p³``), an isotonic calibrator is
fitted on the first later period and evaluated on the second, later one.  Also shown: the model's
AUC out of time (near chance, as the market allows) and the out-of-time acceptance rule.
"""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
from sklearn.metrics import roc_auc_score

from coordinator.ensemble.calibration import (
    EPS,
    ModelCalibration,
    expected_calibration_error,
    fit_isotonic,
    log_loss,
    shrink,
)
from xylen.data.importers import read_freqtrade_feather
from xylen.features import compute_features

HORIZON = 12  # 5m candles in one hour
TRAIN = slice(1_000, 41_000)  # early period (after the warm-up)
CALIB = slice(41_500, 71_500)  # first later period (gap > horizon: no overlapping labels)
TEST = slice(72_000, 102_000)  # second, later period


def test_isotonic_cuts_ece_on_a_later_period(btc_5m_path: Path) -> None:
    candles = read_freqtrade_feather(btc_5m_path)
    features = compute_features(candles, "5m")
    x = features.drop(columns=["open_time"]).to_numpy(dtype=np.float32)
    close = candles["close"].to_numpy()
    y = np.zeros(len(close))
    y[:-HORIZON] = (close[HORIZON:] > close[:-HORIZON]).astype(float)
    booster = lgb.train(
        {
            "objective": "binary",
            "num_threads": 2,
            "verbose": -1,
            "num_leaves": 15,
            "learning_rate": 0.05,
            "seed": 1,
        },
        lgb.Dataset(x[TRAIN], label=y[TRAIN]),
        num_boost_round=100,
    )
    p_cal, p_test = booster.predict(x[CALIB]), booster.predict(x[TEST])
    y_cal, y_test = y[CALIB], y[TEST]
    auc = roc_auc_score(y_test, p_test)
    d_cal, d_test = p_cal**3, p_test**3  # the distortion
    ece_raw = expected_calibration_error(p_test, y_test)
    ece_distorted = expected_calibration_error(d_test, y_test)
    calibrator = fit_isotonic(d_cal, y_cal)
    ece_calibrated = expected_calibration_error(calibrator.apply(d_test), y_test)
    print(
        f"\nreal BTC 5m: out-of-time AUC {auc:.4f}, base rate {y_test.mean():.4f}; ECE on the later period: "
        f"raw {ece_raw:.4f}, distorted p^3 {ece_distorted:.4f}, isotonic-calibrated {ece_calibrated:.4f} "
        f"({ece_calibrated / ece_distorted:.3f} of distorted); log-loss distorted "
        f"{log_loss(d_test, y_test):.4f} -> calibrated {log_loss(calibrator.apply(d_test), y_test):.4f}"
    )
    assert ece_calibrated < ece_distorted / 3
    assert log_loss(calibrator.apply(d_test), y_test) < log_loss(d_test, y_test)

    # the scheduled path: a candidate fitted on older outcomes replaces the shrunk raw probabilities
    # only when it does not worsen log-loss on the most recent holdout
    cal = ModelCalibration(shrink_factor=0.5)
    result = cal.refit(list(d_cal), [int(v) for v in y_cal], now_ms=1)
    assert result is not None and result.accepted and cal.calibrator is not None
    assert result.candidate_logloss <= result.current_logloss
    assert expected_calibration_error(cal.apply(d_test), y_test) < ece_distorted / 3


def test_shrink_and_clip() -> None:
    assert shrink(0.8, 0.5) == 0.65
    assert shrink(1.0, 1.0) == 1.0 - EPS and shrink(0.0, 1.0) == EPS


def test_worse_candidate_is_rejected() -> None:
    # outcomes whose relation to p flips in the most recent quarter: the candidate fitted on the older
    # part is worse on the holdout than the shrunk raw probabilities, so it is not deployed
    rng = np.random.default_rng(0)
    p = rng.uniform(0.05, 0.95, 800)
    y = (rng.random(800) < p).astype(int)
    y[600:] = (rng.random(200) < 1 - p[600:]).astype(int)
    cal = ModelCalibration(shrink_factor=0.2)
    result = cal.refit(list(p), list(y), now_ms=5)
    assert result is not None and not result.accepted and cal.calibrator is None and cal.last_refit_ms == 5


def test_numpy_interp_matches_sklearn() -> None:
    from sklearn.isotonic import IsotonicRegression

    rng = np.random.default_rng(1)
    p = rng.uniform(0, 1, 3000)
    y = (rng.random(3000) < p**2).astype(float)
    calibrator = fit_isotonic(p, y, min_bin=1, max_bins=10_000)  # one sample per bin: plain isotonic
    iso = IsotonicRegression(y_min=EPS, y_max=1 - EPS, out_of_bounds="clip").fit(p, y)
    grid = np.linspace(-0.1, 1.1, 501)
    assert np.allclose(calibrator.apply(grid), np.clip(iso.predict(grid), EPS, 1 - EPS))
    assert calibrator(0.3) == float(np.clip(iso.predict([0.3])[0], EPS, 1 - EPS))
