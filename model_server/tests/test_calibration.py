"""The calibration map, its JSON file, the metric formulas (against scikit-learn) and the PNG plot."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

from model_server.calibration import CALIBRATION_FILE, CalibrationError, Calibrator, load_calibrator
from model_server.training.calibrate import fit_method, select_calibrator, time_chunks
from model_server.training.evaluation import (
    _SortedAuc,
    auc,
    brier,
    day_block_auc_interval,
    evaluate,
    expected_calibration_error,
    reliability,
    reliability_png,
)
from model_server.training.evaluation import log_loss as our_log_loss

RNG = np.random.default_rng(7)


def _calibrators() -> list[Calibrator]:
    p = RNG.uniform(0.2, 0.8, 4000)
    y = (RNG.uniform(size=4000) < 0.5 + 0.3 * (p - 0.5)).astype(float)
    fitted = [fit_method(m, p, y, 0.52) for m in ("identity", "constant", "platt", "beta", "isotonic")]
    shrunk = [Calibrator(c.method, c.base_rate, 0.4, c.coef, c.x, c.y) for c in fitted]
    return fitted + shrunk


@pytest.mark.parametrize("cal", _calibrators(), ids=lambda c: f"{c.method}-{c.shrink}")
def test_scalar_and_vector_paths_agree_and_round_trip(cal: Calibrator, tmp_path: Path) -> None:
    p = np.r_[0.0, 1e-9, RNG.uniform(0, 1, 500), 1.0, np.nan]
    vec = cal.apply(p)
    one = np.array([cal.apply_one(float(v)) for v in p])
    np.testing.assert_allclose(one, vec, rtol=0, atol=1e-12)
    assert np.isfinite(vec).all() and (vec > 0).all() and (vec < 1).all()
    cal.save(tmp_path)
    again = load_calibrator(tmp_path)
    np.testing.assert_array_equal(again.apply(p), vec)
    text = (tmp_path / CALIBRATION_FILE).read_text()
    assert json.loads(text)["method"] == cal.method  # plain JSON, no pickle


def test_platt_and_beta_recover_a_known_distortion() -> None:
    # True probabilities q; the "model" says sigmoid(3 * logit(q)) (over-confident by 3x).
    q = RNG.uniform(0.35, 0.65, 200_000)
    y = (RNG.uniform(size=len(q)) < q).astype(float)
    z = np.log(q / (1 - q))
    p = 1 / (1 + np.exp(-3 * z))
    platt = fit_method("platt", p, y, 0.5)
    assert platt.coef[0] == pytest.approx(1 / 3, abs=0.03) and platt.coef[1] == pytest.approx(0, abs=0.02)
    beta = fit_method("beta", p, y, 0.5)
    assert beta.coef[0] == pytest.approx(1 / 3, abs=0.05) and beta.coef[1] == pytest.approx(1 / 3, abs=0.05)
    iso = fit_method("isotonic", p, y, 0.5)
    assert np.all(np.diff(iso.x) > 0) and np.all(np.diff(iso.y) >= 0)
    assert np.abs(platt.apply(p) - q).max() < 0.02


def test_bad_calibration_file_is_refused(tmp_path: Path) -> None:
    assert load_calibrator(tmp_path).is_identity  # no file: identity (older model directories)
    for body in (
        "{not json",
        json.dumps({"method": "magic", "base_rate": 0.5}),
        json.dumps({"method": "platt", "base_rate": 0.5, "coef": [1.0]}),
        json.dumps({"method": "isotonic", "base_rate": 0.5, "x": [0.2, 0.1], "y": [0.1, 0.2]}),
        json.dumps({"method": "constant", "base_rate": 1.5}),
    ):
        (tmp_path / CALIBRATION_FILE).write_text(body)
        with pytest.raises(CalibrationError):
            load_calibrator(tmp_path)


def test_metric_formulas_match_sklearn() -> None:
    n = 5000
    p = np.round(RNG.uniform(0.05, 0.95, n), 2)  # many ties
    y = (RNG.uniform(size=n) < p).astype(float)
    assert auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    w = RNG.integers(0, 4, n).astype(float)
    assert _SortedAuc(y, p)(w) == pytest.approx(roc_auc_score(y, p, sample_weight=w), abs=1e-12)
    assert our_log_loss(y, p) == pytest.approx(log_loss(y, p), abs=1e-12)
    assert brier(y, p) == pytest.approx(brier_score_loss(y, p), abs=1e-12)
    # ECE by hand: 15 equal-width bins, share-weighted |mean p - mean y|.
    bins = np.minimum((p * 15).astype(int), 14)
    by_hand = (
        sum(abs(p[bins == b].mean() - y[bins == b].mean()) * (bins == b).sum() for b in np.unique(bins)) / n
    )
    assert expected_calibration_error(y, p) == pytest.approx(by_hand, abs=1e-12)
    assert sum(r["n"] for r in reliability(y, p)) == n
    assert expected_calibration_error([1, 0], [0.5, 0.5]) == pytest.approx(0.0)


def test_day_block_bootstrap_interval() -> None:
    day = 86_400_000
    n_days, per_day = 120, 100
    t = np.repeat(np.arange(n_days) * day, per_day) + np.tile(np.arange(per_day) * 300_000, n_days)
    # Days alternate between informative and useless, so whole-day resampling matters.
    signal = np.repeat(RNG.normal(0, 1, n_days), per_day)
    p = 1 / (1 + np.exp(-(0.3 * signal + RNG.normal(0, 0.3, len(t)))))
    y = (RNG.uniform(size=len(t)) < p).astype(float)
    lo, hi = day_block_auc_interval(y, p, t, n_boot=400, seed=1)
    point = auc(y, p)
    assert lo < point < hi and hi - lo < 0.2
    assert day_block_auc_interval(y, p, t, n_boot=400, seed=1) == (lo, hi)  # seeded
    report = evaluate("x", y, p, t, base_rate=0.5, n_boot=200)
    assert report.days == n_days and report.n == len(t)
    assert report.log_loss_constant == pytest.approx(np.log(2))
    assert report.brier_constant == pytest.approx(0.25)
    flat = report.flat("final")
    assert flat["final_auc"] == pytest.approx(point) and "final_log_loss_vs_constant" in flat


def test_reliability_png_is_a_valid_image() -> None:
    p = RNG.uniform(0.3, 0.7, 3000)
    y = (RNG.uniform(size=3000) < p).astype(float)
    data = reliability_png([reliability(y, p), reliability(y, 0.5 + 2 * (p - 0.5))], size=200)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (200, 200)
    start = data.index(b"IDAT") + 4
    length = struct.unpack(">I", data[start - 8 : start - 4])[0]
    raw = zlib.decompress(data[start : start + length])
    pixels = np.frombuffer(raw, dtype=np.uint8).reshape(200, 1 + 200 * 3)[:, 1:].reshape(200, 200, 3)
    assert (pixels == 255).all(axis=2).mean() > 0.5  # mostly white
    assert ((pixels[:, :, 0] == 31) & (pixels[:, :, 2] == 180)).any()  # the first curve is drawn
    assert ((pixels[:, :, 0] == 214) & (pixels[:, :, 1] == 39)).any()  # and the second


def test_time_chunks_and_nested_choice_of_the_constant_for_noise() -> None:
    assert list(time_chunks(None, 8)) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert list(time_chunks([3, 3, 5, 7, 7], 5)) == [0, 0, 1, 2, 2]
    # Probabilities with no relation to the outcome: nothing may beat the constant.
    n = 40_000
    p = RNG.uniform(0.2, 0.8, n)
    y = (RNG.uniform(size=n) < 0.53).astype(float)
    choice = select_calibrator(p, y, base_rate=0.53, groups=np.repeat(np.arange(5), n // 5))
    cal = choice.calibrator
    assert choice.name == "constant" or cal.shrink >= 0.75 or cal.method == "isotonic"
    served = cal.apply(p)
    assert np.ptp(served) < 0.05
    assert choice.scores[choice.name] <= choice.scores["constant"]
    assert choice.scores["identity"] > choice.scores["constant"] + 0.01  # the raw noise loses clearly
