"""The continuous trainer: real (small) LightGBM training on a slice of the shipped BTC 5m candles.

The home holds the real candles in its candle store, a champion model directory trained on an
older part of them, and a feedback buffer of real feature rows.  "Bad" models are trained on the
same rows with shuffled labels (``build_dataset`` wrapped for the champion, or the trainer's
``train`` seam for the challenger), with parameters loose enough that a model of noise is visibly
over-confident.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from model_server import continuous_trainer as ct
from model_server.feedback import RETRAIN_MARKER, FeedbackBuffer
from model_server.settings import ServerSettings, load_settings
from model_server.training import train as train_mod
from model_server.training.dataset import Dataset, build_dataset
from model_server.training.train import TrainConfig, TrainedModel, train_model, write_model_dir
from xylen.contract import ModelMetadata, Outcome
from xylen.data.importers import read_freqtrade_feather
from xylen.data.store import CandleStore
from xylen.features import FEATURE_VERSION

SLICE = 24_000  # ~83 days of 5m candles
HOLD_BACK = 3_000  # the champion never sees the newest ~10 days
PARAMS = {"min_data_in_leaf": 100, "learning_rate": 0.1, "num_leaves": 15}
CONFIG = TrainConfig(n_folds=1, num_boost_round=40, num_threads=2, params=PARAMS)
DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def candles(btc_5m_path: Path) -> pd.DataFrame:
    return read_freqtrade_feather(btc_5m_path).iloc[-SLICE:].reset_index(drop=True)


def shuffled(ds: Dataset) -> Dataset:
    """The same rows with their labels permuted: a model of pure noise."""
    return dataclasses.replace(ds, y=np.random.default_rng(7).permutation(ds.y))


def train_shuffled(candles: pd.DataFrame, config: TrainConfig, now_ms: int) -> TrainedModel:
    """``train_model`` with every label shuffled (the trainer's ``train`` seam, or a bad champion)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train_mod, "build_dataset", lambda *a, **k: shuffled(build_dataset(*a, **k)))
        return train_model(candles, config, now_ms=now_ms)


@pytest.fixture(scope="module")
def champion_created() -> int:
    return int(time.time() * 1000) - DAY_MS


@pytest.fixture(scope="module")
def good_champion(candles: pd.DataFrame, champion_created: int) -> TrainedModel:
    return train_model(candles.iloc[:-HOLD_BACK], CONFIG, now_ms=champion_created)


@pytest.fixture(scope="module")
def bad_champion(candles: pd.DataFrame, champion_created: int) -> TrainedModel:
    return train_shuffled(candles.iloc[:-HOLD_BACK], CONFIG, champion_created)


@pytest.fixture(scope="module")
def feedback_outcomes(candles: pd.DataFrame) -> list[Outcome]:
    """300 real feature rows of the newest candles with their real labels."""
    ds = build_dataset(candles.iloc[-2_500:].reset_index(drop=True), "5m", 12, CONFIG.cost)
    return [
        Outcome(
            request_id=f"r{i}",
            timestamp=int(ds.open_time[i]),
            features={n: float(v) for n, v in zip(ds.feature_names, ds.X[i], strict=True)},
            label=int(ds.y[i]),
        )
        for i in range(len(ds) - 300, len(ds))
    ]


def make_home(tmp_path: Path, candles: pd.DataFrame, champion: TrainedModel, outcomes: list[Outcome]) -> Path:
    home = tmp_path / "home"
    CandleStore(home / "candles").write("um", "BTCUSDT", "5m", candles)
    write_model_dir(champion, home / "models" / champion.metadata.model_version, onnx=False)
    FeedbackBuffer(home / "feedback").append(outcomes, FEATURE_VERSION)
    return home


def settings_for(home: Path, **overrides: Any) -> ServerSettings:
    values: dict[str, Any] = {"retrain_min_samples": 200, "lgbm_num_threads": 2, "min_free_memory_mb": 64}
    values.update(overrides)
    return load_settings(None, xylen_home=home, **values)


def model_dirs(home: Path) -> list[str]:
    return sorted(p.name for p in (home / "models").iterdir() if p.is_dir() and not p.name.startswith("."))


def records(home: Path) -> list[dict[str, Any]]:
    path = home / "models" / ct.PROMOTIONS_FILE
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_not_enough_samples_trains_nothing(
    tmp_path: Path, candles: pd.DataFrame, good_champion: TrainedModel, feedback_outcomes: list[Outcome]
) -> None:
    home = make_home(tmp_path, candles, good_champion, feedback_outcomes)

    def never(*_: Any) -> TrainedModel:
        raise AssertionError("must not train")

    result = ct.run_once(settings_for(home, retrain_min_samples=1_000), train=never)
    assert result.outcome == "no retrain needed" and "300 new feedback sample(s)" in result.reason
    assert model_dirs(home) == [good_champion.metadata.model_version]
    assert records(home) == [] and len(list((home / "feedback").glob("part-*"))) == 1


def test_low_memory_skips_with_the_reason(
    tmp_path: Path,
    candles: pd.DataFrame,
    good_champion: TrainedModel,
    feedback_outcomes: list[Outcome],
    caplog: pytest.LogCaptureFixture,
) -> None:
    home = make_home(tmp_path, candles, good_champion, feedback_outcomes)
    caplog.set_level("INFO", logger=ct.__name__)
    result = ct.run_once(settings_for(home, min_free_memory_mb=10**9))
    assert result.outcome == "skipped" and "MIN_FREE_MEMORY_MB" in result.reason
    assert "MIN_FREE_MEMORY_MB" in caplog.text
    assert model_dirs(home) == [good_champion.metadata.model_version] and records(home) == []


def test_better_challenger_is_promoted(
    tmp_path: Path, candles: pd.DataFrame, bad_champion: TrainedModel, feedback_outcomes: list[Outcome]
) -> None:
    home = make_home(tmp_path, candles, bad_champion, feedback_outcomes)
    FeedbackBuffer(home / "feedback").request_retrain("test")
    started = time.perf_counter()
    result = ct.run_once(settings_for(home, retrain_min_samples=5_000))  # the marker asks for it
    print(json.dumps(result.record, indent=1), f"{time.perf_counter() - started:.1f}s")
    assert result.outcome == "promoted" and result.record is not None and result.path is not None
    rec = result.record
    assert rec["challenger_log_loss"] < rec["champion_log_loss"]
    assert rec["champion"] == bad_champion.metadata.model_version and rec["retrain_requested"]
    # The out-of-time window is after the champion's span plus the purge gap, and the challenger's
    # training labels end a horizon before it.
    assert rec["eval_start"] >= bad_champion.metadata.train_end + 13 * 300_000
    assert rec["challenger_train_end"] + 2 * 12 * 300_000 <= rec["eval_start"]
    assert rec["eval_rows"] >= 500 and rec["feedback_validation"]["rows"] > 0
    # The new version directory is in the models folder, complete, with the champion's config.
    assert model_dirs(home) == sorted([bad_champion.metadata.model_version, rec["challenger"]])
    assert result.path == home / "models" / rec["challenger"]
    assert sorted(p.name for p in result.path.iterdir()) == [
        "calibration.json",
        "metadata.json",
        "model.onnx",
        "model.txt",
        "reliability.png",
    ]
    meta = ModelMetadata.model_validate_json((result.path / "metadata.json").read_text())
    extra = meta.model_extra or {}
    old = bad_champion.metadata
    assert (meta.horizon_bars, meta.stop_atr_multiple, meta.take_profit_atr_multiple) == (
        old.horizon_bars,
        old.stop_atr_multiple,
        old.take_profit_atr_multiple,
    )
    assert extra["profile"] == "8gb" and extra["num_boost_round"] == 40
    assert (
        extra["lgb_params"]["learning_rate"] == 0.1 and extra["continuous_training"]["outcome"] == "promoted"
    )
    # Logged once, samples consumed, marker gone.
    assert [r["outcome"] for r in records(home)] == ["promoted"]
    assert not list((home / "feedback").glob("part-*")) and not (home / "feedback" / RETRAIN_MARKER).exists()
    assert len(list((home / "feedback" / "consumed").glob("part-*"))) == 1
    # Nothing new since: the next run does not train.
    assert ct.run_once(settings_for(home)).outcome == "no retrain needed"


def test_worse_challenger_is_not_promoted(
    tmp_path: Path, candles: pd.DataFrame, good_champion: TrainedModel, feedback_outcomes: list[Outcome]
) -> None:
    home = make_home(tmp_path, candles, good_champion, feedback_outcomes)
    result = ct.run_once(settings_for(home), train=train_shuffled)
    print(json.dumps(result.record, indent=1))
    assert result.outcome == "kept champion" and result.record is not None and result.path is None
    assert result.record["challenger_log_loss"] >= result.record["champion_log_loss"]
    assert model_dirs(home) == [good_champion.metadata.model_version]
    assert [r["outcome"] for r in records(home)] == ["kept champion"]


def test_cli_exit_codes(
    tmp_path: Path,
    candles: pd.DataFrame,
    good_champion: TrainedModel,
    feedback_outcomes: list[Outcome],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = make_home(tmp_path, candles, good_champion, feedback_outcomes)
    bad = tmp_path / "bad.env"
    bad.write_text("RETRAIN_MIN_SAMPLE=10\n")
    assert ct.main(["--home", str(home), "--env-file", str(bad)]) == 2
    assert ct.main(["--home", str(home), "--profile", "nope"]) == 2
    good = tmp_path / "models.env"
    good.write_text("RETRAIN_MIN_SAMPLES=100000\nLGBM_NUM_THREADS=2\n")
    assert ct.main(["--home", str(home), "--env-file", str(good), "--once"]) == 0
    assert records(home) == []
    # No candles for the champion's symbol: a failure, exit 1.
    monkeypatch.setattr(ct, "CandleStore", lambda root: CandleStore(tmp_path / "empty"))
    assert ct.main(["--home", str(home), "--force"]) == 1


def test_the_challenger_learns_from_the_newest_rows(tmp_path: Path, good_champion: TrainedModel) -> None:
    """``xylen train`` holds out a final window; the trainer's challenger must not, or it would never
    learn from the data just before the trainer's own evaluation window."""
    settings = settings_for(tmp_path)
    config = ct.config_from_champion(good_champion.metadata, settings, ct.TrainerOptions())
    assert config.final_test_days == 0
    assert config.symbol == good_champion.metadata.symbol
