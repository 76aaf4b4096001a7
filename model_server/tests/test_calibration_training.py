"""Calibration in a real training run on the shipped BTC data: the final window stays unseen, the
calibrator rescues an over-confident model, and LightGBM and ONNX serve the same calibrated answer.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest

from model_server.calibration import CALIBRATION_FILE, Calibrator, load_calibrator
from model_server.predictors import LightGBMPredictor, OnnxPredictor, load_predictor
from model_server.registry import canary_check
from model_server.training import TrainConfig, TrainedModel, build_dataset, train_model, write_model_dir
from model_server.training.calibrate import select_calibrator
from model_server.training.evaluation import log_loss
from model_server.training.train import format_report
from xylen.data.importers import read_freqtrade_feather
from xylen.probability import logit

SLICE = 40_000  # about 139 days of 5m candles
FINAL_DAYS = 20.0
STEP = 300_000


def _config() -> TrainConfig:
    return TrainConfig(n_folds=4, num_boost_round=100, num_threads=2, final_test_days=FINAL_DAYS, n_boot=200)


@pytest.fixture(scope="module")
def candles(btc_5m_path: Path) -> pd.DataFrame:
    return read_freqtrade_feather(btc_5m_path).iloc[-SLICE:].reset_index(drop=True)


@pytest.fixture(scope="module")
def trained(candles: pd.DataFrame) -> TrainedModel:
    return train_model(candles, _config(), now_ms=1_706_745_600_000)


@pytest.fixture(scope="module")
def model_dir(trained: TrainedModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model_dir(trained, tmp_path_factory.mktemp("cal") / "btc")


def _final_rows(trained: TrainedModel, candles: pd.DataFrame) -> list[dict[str, float]]:
    """The final window's feature rows as dicts (the rows the model never saw)."""
    cfg = trained.config
    ds = build_dataset(candles, cfg.interval, cfg.horizon_bars, cfg.cost)
    names = ds.feature_names
    return [dict(zip(names, map(float, row), strict=True)) for row in ds.X[trained.final_index]]


def test_final_window_is_never_trained_or_calibrated_on(trained: TrainedModel, candles: pd.DataFrame) -> None:
    meta = trained.metadata
    extra = meta.model_extra or {}
    final = extra["final_test"]
    gap = final["gap_bars"]
    assert final["days"] == pytest.approx(FINAL_DAYS, abs=0.01) and final["rows"] == len(trained.final_index)
    # Every fitted row's label window (t .. t + horizon) closes before the final window opens.
    assert meta.train_end + (gap + 0) * STEP <= final["start"]
    assert meta.train_end + meta.horizon_bars * STEP < final["start"]
    assert set(trained.walk_forward.oof_index) <= set(trained.fit_index)
    assert not set(trained.fit_index) & set(trained.final_index)
    assert extra["calibration"]["info"]["rows_fitted"] == len(trained.walk_forward.oof_index)

    # Scramble every candle of the final window: the shipped booster, the out-of-fold predictions and
    # the calibrator must not change by a bit, while the final-window figures do.
    first_final_ms = int(candles["open_time"].iloc[0]) + final["first_bar"] * STEP
    tampered = candles.copy()
    inside = np.flatnonzero(tampered["open_time"].to_numpy() >= first_final_ms)
    assert len(inside) > 5000
    shuffled = np.random.default_rng(3).permutation(inside)
    cols = ["open", "high", "low", "close", "volume"]
    tampered.loc[inside, cols] = tampered.loc[shuffled, cols].to_numpy()
    again = train_model(tampered, _config(), now_ms=1_706_745_600_000)
    assert again.booster.model_to_string() == trained.booster.model_to_string()
    np.testing.assert_array_equal(again.walk_forward.oof_proba, trained.walk_forward.oof_proba)
    assert again.calibrator == trained.calibrator
    assert again.reports["final"].log_loss != trained.reports["final"].log_loss


def test_report_and_metadata_give_the_calibration_figures(trained: TrainedModel, model_dir: Path) -> None:
    report = format_report(trained)
    print(report)
    assert set(trained.reports) == {"oof_raw", "oof_calibrated", "final_raw", "final", "final_served"}
    meta = json.loads((model_dir / "metadata.json").read_text())
    for key in ("oof_raw", "oof_calibrated", "final_raw", "final", "final_served"):
        figures = meta["evaluation"][key]
        assert figures["auc_lo"] < figures["auc"] < figures["auc_hi"]
        assert figures["log_loss_vs_constant"] == pytest.approx(
            figures["log_loss"] - figures["log_loss_constant"]
        )
        assert len(figures["reliability"]) >= 2
        assert meta["metrics"][f"{key}_ece"] == pytest.approx(figures["ece"])
    assert meta["calibration"]["file"] == CALIBRATION_FILE
    assert (model_dir / "reliability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    final = trained.reports["final"]
    # The goal on unseen data: never worse than the constant base rate by more than 0.0005 nats.
    assert final.log_loss <= final.log_loss_constant + 0.0005
    assert final.ece < 0.04
    # Served (recalibrated online from the window's own outcomes as they arrive): the same goal.
    served = trained.reports["final_served"]
    assert served.log_loss <= served.log_loss_constant + 0.0005
    assert served.ece < 0.04


def test_calibrator_rescues_an_over_confident_model(trained: TrainedModel, candles: pd.DataFrame) -> None:
    """A model 4x too confident in log-odds: raw, it loses to the constant on later data; calibrated on
    its out-of-fold predictions, it is no worse than the constant + 0.0005 on the final window."""
    wf = trained.walk_forward
    ds_y = build_dataset(candles, "5m", 12, trained.config.cost).y

    def over(p: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        z = np.log(p / (1 - p))
        return np.asarray(1 / (1 + np.exp(-4 * z)), dtype=np.float64)

    oof = over(wf.oof_proba)
    y_oof = ds_y[wf.oof_index].astype(float)
    base = float(ds_y[trained.fit_index].mean())
    choice = select_calibrator(oof, y_oof, base, groups=wf.oof_fold)
    raw_final = np.asarray(trained.booster.predict(_matrix(trained, candles)), dtype=np.float64)
    y_final = ds_y[trained.final_index].astype(float)
    constant = log_loss(y_final, np.full(len(y_final), base))
    assert log_loss(y_final, over(raw_final)) > constant + 0.005  # the raw over-confident model loses
    calibrated = choice.calibrator.apply(over(raw_final))
    assert log_loss(y_final, calibrated) <= constant + 0.0005
    assert choice.calibrator.method != "identity" or choice.calibrator.shrink > 0


def _matrix(trained: TrainedModel, candles: pd.DataFrame) -> npt.NDArray[np.float32]:
    cfg = trained.config
    ds = build_dataset(candles, cfg.interval, cfg.horizon_bars, cfg.cost)
    return np.asarray(ds.X[trained.final_index])


def test_lightgbm_and_onnx_serve_the_same_calibrated_probability(
    trained: TrainedModel, model_dir: Path, candles: pd.DataFrame
) -> None:
    rows = _final_rows(trained, candles)[:2000]
    lgb_pred, reason = load_predictor(model_dir, "lightgbm")
    onnx_pred, reason2 = load_predictor(model_dir, "onnx")
    assert isinstance(lgb_pred, LightGBMPredictor) and isinstance(onnx_pred, OnnxPredictor)
    assert reason is None and reason2 is None
    cal = load_calibrator(model_dir)
    assert cal == trained.calibrator
    raw = trained.booster.predict(np.array([[r[n] for n in lgb_pred.feature_names] for r in rows]))
    p_lgb, p_onnx = lgb_pred.predict_many(rows), onnx_pred.predict_many(rows)
    np.testing.assert_allclose(p_lgb, cal.apply(raw), atol=1e-12)
    np.testing.assert_allclose(p_onnx, p_lgb, atol=1e-6)
    np.testing.assert_allclose(onnx_pred.predict_many_raw(rows), raw, atol=1e-6)
    for r in rows[:50]:
        served, raw_one = lgb_pred.score_one(r)
        served_onnx, raw_onnx = onnx_pred.score_one(r)
        assert served == pytest.approx(served_onnx, abs=1e-6) and raw_one == pytest.approx(raw_onnx, abs=1e-6)
        assert served == pytest.approx(cal.apply_one(raw_one), abs=1e-12)
        assert lgb_pred.predict_one(r) == served
    if not cal.is_identity:
        assert np.abs(p_lgb - raw).max() > 1e-4  # calibration is applied, raw_score stays the raw logit
    # A forced Platt map: both backends apply it, and the clone keeps it.
    forced = Calibrator("platt", 0.52, 0.0, (0.4, 0.05))
    forced.save(model_dir)
    a, b = LightGBMPredictor.load(model_dir), OnnxPredictor.load(model_dir).clone()
    np.testing.assert_allclose(a.predict_many(rows), forced.apply(raw), atol=1e-12)
    np.testing.assert_allclose(b.predict_many(rows), forced.apply(raw), atol=1e-6)
    trained.calibrator.save(model_dir)


def test_a_model_that_serves_the_base_rate_passes_the_canary(
    trained: TrainedModel, model_dir: Path, candles: pd.DataFrame, tmp_path: Path
) -> None:
    import shutil

    folder = tmp_path / "constant"
    shutil.copytree(model_dir, folder)
    Calibrator("constant", 0.517).save(folder)
    rows = _final_rows(trained, candles)[:200]
    predictor, _ = load_predictor(folder, "lightgbm")
    assert canary_check(predictor, rows) == len(rows)
    served = predictor.predict_many(rows)
    assert np.all(served == pytest.approx(0.517))
    raws = [predictor.score_one(r)[1] for r in rows]
    assert np.ptp([logit(v) for v in raws]) > 0.01  # raw_score still tells the model's own log-odds
