"""One contract test run over every backend (LightGBM, ONNX, River), plus the loader's fallbacks."""

from __future__ import annotations

import random
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from model_server.predictors import (
    FeatureVersionMismatch,
    LightGBMPredictor,
    MissingFeatures,
    ModelError,
    ModelLoadError,
    OnlineLearningUnsupported,
    OnnxPredictor,
    Predictor,
    RiverPredictor,
    load_predictor,
)
from model_server.predictors.river import OnlineConfig
from model_server.registry import canary_check
from model_server.tests.server_support import dataset, feature_rows, metadata, train_booster, write_model_dir

BACKENDS = ["lightgbm", "onnx", "river"]


@pytest.fixture(scope="module")
def model_dir(btc_5m_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model_dir(tmp_path_factory.mktemp("models") / "v1", train_booster(btc_5m_path), "v1")


@pytest.fixture(scope="module")
def rows(btc_5m_path: Path) -> list[dict[str, float]]:
    return feature_rows(btc_5m_path, 64)


def trained_river(btc_5m_path: Path) -> RiverPredictor:
    x, y, _ = dataset(btc_5m_path)
    # answering from the model at once (no warm-up, no skill required), so the contract is
    # checked on the model's own answers rather than on the base rate it gives until it has skill
    river = RiverPredictor.fresh(metadata("river-1"), config=OnlineConfig(min_outcomes=0, margin=-1.0))
    for row, label in zip(x.head(400).to_dict("records"), y[:400], strict=True):
        river.learn_one(row, int(label))
    return river


@pytest.fixture(params=BACKENDS)
def make(request: pytest.FixtureRequest, model_dir: Path, btc_5m_path: Path) -> Callable[[], Predictor]:
    name = request.param
    if name == "lightgbm":
        return lambda: LightGBMPredictor.load(model_dir)
    if name == "onnx":
        return lambda: OnnxPredictor.load(model_dir)
    river = trained_river(btc_5m_path)
    return river.clone


def test_probabilities_are_finite_and_in_unit_interval(
    make: Callable[[], Predictor], rows: list[dict[str, float]]
) -> None:
    predictor = make()
    probs = predictor.predict_many(rows)
    assert probs.shape == (len(rows),)
    assert np.isfinite(probs).all() and (probs >= 0).all() and (probs <= 1).all()
    assert np.ptp(probs) > 0, "a trained model varies over real rows"
    one = [predictor.predict_one(r) for r in rows]
    np.testing.assert_allclose(one, probs, rtol=1e-6, atol=1e-7)


def test_features_are_matched_by_name_not_position(
    make: Callable[[], Predictor], rows: list[dict[str, float]]
) -> None:
    predictor = make()
    rng = random.Random(7)
    for row in rows[:10]:
        keys = list(row)
        rng.shuffle(keys)
        shuffled = {k: row[k] for k in keys}
        shuffled["open_time"] = 1.0  # extra keys are ignored
        assert predictor.predict_one(shuffled) == predictor.predict_one(row)


def test_missing_feature_is_refused(make: Callable[[], Predictor], rows: list[dict[str, float]]) -> None:
    row = dict(rows[0])
    del row["rsi_14"]
    with pytest.raises(MissingFeatures, match="rsi_14"):
        make().predict_one(row)


def test_wrong_feature_version_is_refused(
    make: Callable[[], Predictor], rows: list[dict[str, float]]
) -> None:
    predictor = make()
    predictor.check_feature_version(predictor.feature_version)
    with pytest.raises(FeatureVersionMismatch):
        predictor.check_feature_version("f0")
    with pytest.raises(FeatureVersionMismatch):
        canary_check(predictor, rows, feature_version="f0")
    assert canary_check(predictor, rows) == len(rows)


def test_learn_one_only_online(make: Callable[[], Predictor], rows: list[dict[str, float]]) -> None:
    predictor = make()
    before = predictor.predict_one(rows[0])
    if predictor.learns_online:
        for _ in range(20):
            predictor.learn_one(rows[0], 1)
        assert predictor.predict_one(rows[0]) > before
    else:
        with pytest.raises(OnlineLearningUnsupported):
            predictor.learn_one(rows[0], 1)


def test_clone_has_same_answers_and_is_independent(
    make: Callable[[], Predictor], rows: list[dict[str, float]]
) -> None:
    predictor = make()
    copy = predictor.clone()
    assert copy is not predictor and copy.version == predictor.version
    np.testing.assert_array_equal(copy.predict_many(rows), predictor.predict_many(rows))
    if predictor.learns_online:
        before = predictor.predict_many(rows)
        for row in rows:
            copy.learn_one(row, 0)
        np.testing.assert_array_equal(predictor.predict_many(rows), before)


def test_lightgbm_and_onnx_agree(model_dir: Path, rows: list[dict[str, float]]) -> None:
    lgbm = LightGBMPredictor.load(model_dir).predict_many(rows)
    onnx = OnnxPredictor.load(model_dir).predict_many(rows)
    np.testing.assert_allclose(lgbm, onnx, atol=1e-5)


def test_onnx_fallback_when_model_txt_is_corrupt(model_dir: Path, tmp_path: Path) -> None:
    broken = shutil.copytree(model_dir, tmp_path / "v2")
    (broken / "model.txt").write_text("tree\nnot a model\n")
    predictor, reason = load_predictor(broken, "lightgbm")
    assert predictor.backend == "onnx" and reason and "lightgbm" in reason
    (broken / "model.onnx").write_bytes(b"\x00garbage")
    with pytest.raises(ModelLoadError, match="onnx"):
        load_predictor(broken, "lightgbm")


def test_onnx_fallback_when_lightgbm_cannot_be_imported(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "lightgbm", None)
    predictor, reason = load_predictor(model_dir, "lightgbm")
    assert predictor.backend == "onnx" and reason and "cannot be imported" in reason


def test_settings_can_prefer_onnx(model_dir: Path) -> None:
    predictor, reason = load_predictor(model_dir, "onnx")
    assert predictor.backend == "onnx" and reason is None


def test_metadata_disagreeing_with_the_model_is_refused(model_dir: Path, tmp_path: Path) -> None:
    bad = shutil.copytree(model_dir, tmp_path / "v3")
    meta = metadata("v3", names=list(reversed(metadata("x").feature_names)))
    (bad / "metadata.json").write_text(meta.model_dump_json())
    with pytest.raises(ModelLoadError, match="feature"):
        LightGBMPredictor.load(bad)
    (bad / "metadata.json").write_text("{not json")
    with pytest.raises(ModelError):
        load_predictor(bad)


def test_canary_refuses_a_constant_model(
    btc_5m_path: Path, tmp_path: Path, rows: list[dict[str, float]]
) -> None:
    folder = write_model_dir(
        tmp_path / "const", train_booster(btc_5m_path, rounds=5, constant=True), "c", onnx=False
    )
    with pytest.raises(ModelLoadError, match="constant"):
        canary_check(LightGBMPredictor.load(folder), rows)


def test_river_state_round_trips(btc_5m_path: Path, tmp_path: Path, rows: list[dict[str, float]]) -> None:
    river = trained_river(btc_5m_path)
    river.save(tmp_path / "r1")
    loaded, _ = load_predictor(tmp_path / "r1", "river")
    assert isinstance(loaded, RiverPredictor) and loaded.n_learned == river.n_learned
    np.testing.assert_array_equal(loaded.predict_many(rows), river.predict_many(rows))
    fresh = RiverPredictor.fresh(metadata("r0"))
    assert not fresh.fitted and fresh.predict_one(rows[0]) == 0.5
