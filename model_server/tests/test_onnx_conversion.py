"""ONNX conversion and parity on real rows, the convert-onnx CLI, and OnnxPredictor's output forms."""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import onnx
import onnxmltools
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxmltools.convert.common.data_types import FloatTensorType

from model_server.convert_to_onnx import booster_to_onnx, validate_parity
from model_server.onnx_inference import OnnxPredictor
from model_server.training.dataset import build_dataset, feature_rows
from model_server.training.labels import round_trip_cost
from model_server.training.profiles import get_profile
from model_server.training.walk_forward import fit_booster
from xylen.cli.main import main
from xylen.data.importers import read_freqtrade_feather
from xylen.features import FEATURE_NAMES


@pytest.fixture(scope="module")
def real_rows(btc_5m_path: Path) -> npt.NDArray[np.float32]:
    return feature_rows(read_freqtrade_feather(btc_5m_path), "5m", 20_000)


@pytest.fixture(scope="module")
def model_300(btc_5m_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 300-tree model fitted on 40k real rows with 255 bins (2 threads)."""
    candles = read_freqtrade_feather(btc_5m_path).iloc[-40_000:].reset_index(drop=True)
    ds = build_dataset(candles, "5m", 12, round_trip_cost())
    params = {**get_profile("16gb").lgb_params(), "num_threads": 2, "num_leaves": 31, "min_data_in_leaf": 200}
    booster = fit_booster(ds.X, ds.y, params, 300, ds.feature_names)
    path = tmp_path_factory.mktemp("m300") / "model.txt"
    booster.save_model(str(path))
    return path


def test_cli_validate_passes_on_300_trees(model_300: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = model_300.with_name("model.onnx")
    status = main(
        [
            "--log-level",
            "WARNING",
            "convert-onnx",
            "--input",
            str(model_300),
            "--output",
            str(out),
            "--validate",
            "--rows",
            "20000",
        ]
    )
    text = capsys.readouterr().out
    print(text)
    assert status == 0, text
    assert "parity PASS on 20,000 rows" in text and "max |dp|" in text and "mean |dp|" in text
    assert OnnxPredictor(out).n_features == len(FEATURE_NAMES)


def test_float_and_double_parity(model_300: Path, real_rows: npt.NDArray[np.float32]) -> None:
    booster = lgb.Booster(model_file=str(model_300))
    exact = validate_parity(booster, booster_to_onnx(booster, "float"), real_rows)
    double = validate_parity(booster, booster_to_onnx(booster, "double"), real_rows)
    print(exact.format(), double.format(), sep="\n")
    assert exact.passed and exact.max_abs_diff < 1e-6 and exact.action_mismatches == 0
    assert double.passed and double.max_abs_diff < 1e-12 and double.action_mismatches == 0
    # onnxmltools' own float thresholds (rounded to nearest) are what the rounding-down fixes.
    plain = onnxmltools.convert_lightgbm(
        booster,
        initial_types=[("input", FloatTensorType([None, len(FEATURE_NAMES)]))],
        zipmap=False,
        target_opset=15,
    )
    print("onnxmltools as is:", validate_parity(booster, plain, real_rows).format())


def test_wrong_onnx_fails_with_exit_1(
    model_300: Path, tmp_path: Path, real_rows: npt.NDArray[np.float32], capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(3)
    other = lgb.train(
        {"objective": "binary", "verbose": -1, "num_threads": 2},
        lgb.Dataset(real_rows[:5000], label=rng.integers(0, 2, 5000)),
        num_boost_round=50,
    )
    wrong = tmp_path / "wrong.onnx"
    wrong.write_bytes(booster_to_onnx(other).SerializeToString())
    status = main(
        [
            "--log-level",
            "WARNING",
            "convert-onnx",
            "--input",
            str(model_300),
            "--output",
            str(wrong),
            "--check-only",
        ]
    )
    assert status == 1
    assert "parity FAIL" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra",
    [
        ["--rows", "0"],
        ["--input", "/nonexistent/model.txt"],
        ["--precision", "half"],
        ["--data", "/none.feather"],
    ],
)
def test_cli_convert_bad_args_exit_2(model_300: Path, tmp_path: Path, extra: list[str]) -> None:
    argv = [
        "--log-level",
        "WARNING",
        "convert-onnx",
        "--input",
        str(model_300),
        "--output",
        str(tmp_path / "m.onnx"),
        "--validate",
        *extra,
    ]
    try:
        status = main(argv)
    except SystemExit as exc:
        status = int(exc.code or 0)
    assert status == 2


def test_not_a_model_exit_1(tmp_path: Path) -> None:
    bad = tmp_path / "model.txt"
    bad.write_text("not a model")
    assert (
        main(
            [
                "--log-level",
                "WARNING",
                "convert-onnx",
                "--input",
                str(bad),
                "--output",
                str(tmp_path / "m.onnx"),
            ]
        )
        == 1
    )


def _logistic_graph(n: int, output: str, shape: list[int | None]) -> bytes:
    """A 'torch.onnx.export'-like network: sigmoid(x @ w) with a probability output."""
    w = numpy_helper.from_array(np.linspace(-1, 1, n, dtype=np.float32).reshape(n, 1), "w")
    nodes = [helper.make_node("MatMul", ["input", "w"], ["z"]), helper.make_node("Sigmoid", ["z"], ["p"])]
    if len(shape) == 1:
        nodes.append(helper.make_node("Flatten", ["p"], ["flat"], axis=0))
        nodes.append(helper.make_node("Squeeze", ["flat", "axes"], [output]))
    else:
        nodes.append(helper.make_node("Identity", ["p"], [output]))
    inits = [w, numpy_helper.from_array(np.array([0], dtype=np.int64), "axes")]
    graph = helper.make_graph(
        nodes,
        "torchlike",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, n])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, shape)],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def test_predictor_serves_a_probability_network() -> None:
    x = np.random.default_rng(0).normal(size=(7, 5)).astype(np.float32)
    expected = 1 / (1 + np.exp(-(x @ np.linspace(-1, 1, 5))))
    for shape in ([None, 1], [None]):
        predictor = OnnxPredictor(_logistic_graph(5, "prob", shape))
        np.testing.assert_allclose(predictor.predict_proba(x), expected, rtol=1e-5)
        assert predictor.predict_one(x[3]) == pytest.approx(expected[3], rel=1e-5)
        with pytest.raises(ValueError, match="expected 5 features"):
            predictor.predict_proba(x[:, :4])


def test_predictor_reads_zipmap(real_rows: npt.NDArray[np.float32]) -> None:
    rng = np.random.default_rng(1)
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_threads": 2},
        lgb.Dataset(real_rows[:3000], label=rng.integers(0, 2, 3000)),
        num_boost_round=20,
    )
    zipmap: onnx.ModelProto = onnxmltools.convert_lightgbm(
        booster,
        initial_types=[("input", FloatTensorType([None, len(FEATURE_NAMES)]))],
        zipmap=True,
        target_opset=15,
    )
    predictor = OnnxPredictor(zipmap.SerializeToString())
    assert predictor.output_name == "probabilities" or "prob" in predictor.output_name
    np.testing.assert_allclose(
        predictor.predict_proba(real_rows[:100]), booster.predict(real_rows[:100]), atol=1e-5
    )
