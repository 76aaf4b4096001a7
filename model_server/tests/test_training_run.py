"""A real training run on a slice of the shipped BTC data, the model directory, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from model_server.onnx_inference import OnnxPredictor
from model_server.training import (
    PROFILES,
    TrainConfig,
    TrainedModel,
    format_table,
    train_model,
    write_model_dir,
)
from model_server.training import train as train_mod
from xylen.cli import train as train_cli
from xylen.cli.main import main
from xylen.contract import ModelMetadata
from xylen.data.importers import read_freqtrade_feather
from xylen.features import FEATURE_NAMES, FEATURE_VERSION

SLICE = 40_000


@pytest.fixture(scope="module")
def candles(btc_5m_path: Path) -> pd.DataFrame:
    return read_freqtrade_feather(btc_5m_path).iloc[-SLICE:].reset_index(drop=True)


@pytest.fixture(scope="module")
def trained(candles: pd.DataFrame) -> TrainedModel:
    config = TrainConfig(n_folds=4, num_boost_round=100, num_threads=2)
    return train_model(candles, config, now_ms=1_706_745_600_000)


def test_real_training_reports_out_of_fold_metrics(trained: TrainedModel) -> None:
    wf = trained.walk_forward
    table = format_table(wf)
    print(table)
    assert len(wf.folds) == 4 and "AUC" in table
    assert 0.45 < wf.pooled.auc < 0.7  # sanity only, not a performance claim
    assert 0.6 < wf.pooled.log_loss < 0.8
    meta = trained.metadata
    assert meta.model_version == "20240201T000000Z"
    assert meta.feature_version == FEATURE_VERSION and meta.feature_names == list(FEATURE_NAMES)
    assert meta.train_start < meta.train_end and meta.horizon_bars == 12
    assert meta.metrics["oof_auc"] == pytest.approx(wf.pooled.auc)
    assert {"lightgbm", "onnxruntime", "numpy"} <= set(meta.library_versions)


def test_model_dir_round_trip(trained: TrainedModel, tmp_path: Path) -> None:
    out = write_model_dir(trained, tmp_path / "models" / "btc")
    assert sorted(p.name for p in out.iterdir()) == [
        "calibration.json",
        "metadata.json",
        "model.onnx",
        "model.txt",
        "reliability.png",
    ]
    assert [p.name for p in out.parent.iterdir()] == ["btc"]  # no temp dir left behind
    meta = ModelMetadata.model_validate_json((out / "metadata.json").read_text())
    core = list(ModelMetadata.model_fields)
    assert meta.model_dump(include=set(core)) == trained.metadata.model_dump(include=set(core))
    assert meta.model_extra is not None and meta.model_extra["onnx_parity"]["rows"] == 10_000
    assert meta.model_extra["label"]["cost_bps"] == pytest.approx(12.0)
    booster = lgb.Booster(model_file=str(out / "model.txt"))
    x = trained.validation_rows[:500]
    onnx = OnnxPredictor(out / "model.onnx")
    np.testing.assert_allclose(onnx.predict_proba(x), booster.predict(x), atol=1e-6)
    assert onnx.predict_one(x[0]) == pytest.approx(float(booster.predict(x[:1])[0]), abs=1e-6)
    assert onnx.feature_names == list(FEATURE_NAMES)


def test_failure_mid_write_leaves_old_dir_intact(
    trained: TrainedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "btc"
    write_model_dir(trained, out, onnx=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    calls = {"n": 0}
    real = train_mod._write_synced

    def failing(path: Path, data: bytes) -> None:
        calls["n"] += 1
        if path.name == "metadata.json":
            raise OSError("disk full")
        real(path, data)

    monkeypatch.setattr(train_mod, "_write_synced", failing)
    with pytest.raises(OSError, match="disk full"):
        write_model_dir(trained, out, onnx=False)
    assert calls["n"] == 2
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["btc"]
    # A failure on a new target leaves no directory at all.
    with pytest.raises(OSError):
        write_model_dir(trained, tmp_path / "new", onnx=False)
    assert not (tmp_path / "new").exists()


def test_replacing_a_model_dir(trained: TrainedModel, tmp_path: Path) -> None:
    out = tmp_path / "btc"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    write_model_dir(trained, out, onnx=False)
    assert sorted(p.name for p in out.iterdir()) == [
        "calibration.json",
        "metadata.json",
        "model.txt",
        "reliability.png",
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["btc"]


def test_cli_train_with_tuning(btc_5m_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frame = read_freqtrade_feather(btc_5m_path).iloc[-15_000:]
    data = tmp_path / "btc.parquet"
    frame.to_parquet(data)
    out = tmp_path / "model"
    argv = ["--log-level", "WARNING", "train", "--symbol", "BTCUSDT", "--input", str(data), "--out", str(out)]
    status = main([*argv, "--tune", "3", "--folds", "3", "--threads", "2", "--profile", "16gb"])
    assert status == 0
    text = capsys.readouterr().out
    assert "AUC" in text and "conf_hit" in text
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["tuning"]["trials"] == 3 and "num_leaves" in meta["tuning"]["best_params"]
    assert meta["profile"] == "16gb"


@pytest.mark.parametrize(
    "extra",
    [
        ["--horizon-bars", "0"],
        ["--from", "2024-03-01", "--to", "2024-01-01"],
        ["--from", "yesterday"],
        ["--profile", "32gb"],
        ["--tune", "-1"],
        ["--interval", "7x"],
    ],
)
def test_cli_train_bad_args_exit_2(extra: list[str], tmp_path: Path) -> None:
    argv = ["--log-level", "WARNING", "train", "--symbol", "BTCUSDT", "--out", str(tmp_path / "m"), *extra]
    try:
        status = main(argv)
    except SystemExit as exc:  # argparse refuses before dispatch
        status = int(exc.code or 0)
    assert status == 2
    assert not (tmp_path / "m").exists()


def test_cli_train_missing_input_and_empty_store(tmp_path: Path) -> None:
    base = [
        "--log-level",
        "WARNING",
        "--home",
        str(tmp_path),
        "train",
        "--symbol",
        "BTCUSDT",
        "--out",
        str(tmp_path / "m"),
    ]
    assert main([*base, "--input", str(tmp_path / "none.feather")]) == 2
    assert main(base) == 1  # nothing stored: a runtime failure


def test_profile_choices_match() -> None:
    assert set(train_cli.PROFILE_CHOICES) == set(PROFILES)
    for profile in PROFILES.values():
        params = profile.lgb_params()
        assert params["num_threads"] == profile.num_threads and params["max_bin"] == profile.max_bin


def test_replacing_without_atomic_exchange(
    trained: TrainedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(train_mod, "_exchange", lambda a, b: False)
    out = tmp_path / "btc"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    write_model_dir(trained, out, onnx=False)
    assert sorted(p.name for p in out.iterdir()) == [
        "calibration.json",
        "metadata.json",
        "model.txt",
        "reliability.png",
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["btc"]
