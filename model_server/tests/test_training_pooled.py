"""One label definition, and one model over several markets, on the shipped real BTC and ETH candles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from model_server.training import TrainConfig, build_dataset
from model_server.training.dataset import build_pooled_dataset
from model_server.training.labels import round_trip_cost
from xylen.cli.main import main
from xylen.contract import ModelMetadata
from xylen.data.importers import read_freqtrade_feather
from xylen.data.schema import interval_ms
from xylen.labels import direction, learnable
from xylen.paths import SHARED_BTC_5M

ROWS = 12_000
H = 12


@pytest.fixture(scope="module")
def frames(shared_data: Path) -> dict[str, pd.DataFrame]:
    eth = shared_data / str(SHARED_BTC_5M).replace("BTC_", "ETH_")
    return {
        "BTCUSDT": read_freqtrade_feather(shared_data / SHARED_BTC_5M).iloc[-ROWS:].reset_index(drop=True),
        "ETHUSDT": read_freqtrade_feather(eth).iloc[-ROWS:].reset_index(drop=True),
    }


def test_training_labels_are_the_coordinators_label(frames: dict[str, pd.DataFrame]) -> None:
    """Every training row's label is ``xylen.labels.direction`` of its entry and exit closes, and
    exactly the moves outside the no-trade band are kept (``xylen.labels.learnable``)."""
    cost = round_trip_cost()
    candles = frames["BTCUSDT"]
    ds = build_dataset(candles, "5m", H, cost)
    close = candles["close"].to_numpy()
    index = {int(t): i for i, t in enumerate(candles["open_time"].to_numpy())}
    rows = np.array([index[int(t)] for t in ds.open_time])
    expected = [direction(close[i], close[i + H]) for i in rows]
    np.testing.assert_array_equal(ds.y.astype(int), expected)
    assert all(learnable(close[i], close[i + H], cost) for i in rows)
    kept = set(rows.tolist())
    dropped_in_band = [
        i
        for i in range(len(candles) - H)
        if i >= rows[0] and i not in kept and not learnable(close[i], close[i + H], cost)
    ]
    assert len(dropped_in_band) == ds.n_hold > 0


def test_pooled_dataset_keeps_each_symbols_rows_in_time_order(frames: dict[str, pd.DataFrame]) -> None:
    cost = round_trip_cost()
    alone = {s: build_dataset(f, "5m", H, cost) for s, f in frames.items()}
    pooled = build_pooled_dataset(frames, "5m", H, cost)
    assert pooled.symbols == ("BTCUSDT", "ETHUSDT") and pooled.symbol_index is not None
    assert len(pooled) == sum(len(d) for d in alone.values())
    assert np.all(np.diff(pooled.open_time) >= 0) and np.all(np.diff(pooled.bar) >= 0)
    step = interval_ms("5m")
    np.testing.assert_array_equal(np.diff(pooled.bar), np.diff(pooled.open_time) // step)
    for i, (symbol, ds) in enumerate(alone.items()):
        mine = pooled.symbol_index == i
        np.testing.assert_array_equal(pooled.X[mine], ds.X, err_msg=symbol)  # its own features
        np.testing.assert_array_equal(pooled.y[mine], ds.y, err_msg=symbol)
    # same instants share a bar: a fold boundary cuts both markets at the same time
    both = np.intersect1d(alone["BTCUSDT"].open_time, alone["ETHUSDT"].open_time)
    assert len(both) > 1000


def test_cli_trains_one_model_over_two_symbols(
    frames: dict[str, pd.DataFrame], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = []
    for symbol, frame in frames.items():
        path = tmp_path / f"{symbol}.parquet"
        frame.to_parquet(path)
        paths.append(str(path))
    out = tmp_path / "pooled"
    argv = ["--log-level", "WARNING", "train", "--symbol", "btcusdt,ETHUSDT", "--input", ",".join(paths)]
    argv += ["--out", str(out), "--folds", "2", "--rounds", "30", "--threads", "2", "--no-onnx"]
    assert main(argv) == 0, capsys.readouterr()
    assert "BTCUSDT,ETHUSDT 5m" in capsys.readouterr().out
    meta = ModelMetadata.model_validate_json((out / "metadata.json").read_text())
    assert meta.symbols == ["BTCUSDT", "ETHUSDT"] and meta.symbol == "BTCUSDT"
    assert meta.base_interval == "5m" and meta.horizon_bars == H
    assert meta.label_band == pytest.approx(round_trip_cost())
    label = json.loads((out / "metadata.json").read_text())["label"]
    assert label["horizon_bars"] == H and label["band"] == pytest.approx(round_trip_cost())
    assert set(label["rows_per_symbol"]) == {"BTCUSDT", "ETHUSDT"}
    assert min(label["rows_per_symbol"].values()) > 1000
    assert meta.atr_feature == "atr_14_rel"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "symbol, inputs",
    [("BTCUSDT,BTCUSDT", None), ("BTCUSDT,", None), ("BTCUSDT,ETHUSDT", "one.parquet")],
)
def test_cli_refuses_bad_symbol_lists(symbol: str, inputs: str | None, tmp_path: Path) -> None:
    argv = ["--log-level", "WARNING", "train", "--symbol", symbol, "--out", str(tmp_path / "m")]
    if inputs is not None:
        argv += ["--input", str(tmp_path / inputs)]
    assert main(argv) == 2
    assert not (tmp_path / "m").exists()


def test_one_symbol_model_names_its_symbol() -> None:
    config = TrainConfig(symbol="ETHUSDT")
    assert config.markets == ("ETHUSDT",)
    assert config.label.horizon_bars == H and config.label.band == pytest.approx(round_trip_cost())
    with pytest.raises(ValueError, match="distinct"):
        TrainConfig(symbols=("BTCUSDT", "BTCUSDT")).validate()
