"""`xylen features` on real files and on the candle store, through the real entry point."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from xylen.cli.main import main
from xylen.data.importers import read_freqtrade_feather
from xylen.data.parse import read_kline_file
from xylen.features import FEATURE_NAMES, FEATURE_VERSION, compute_features


def _assert_same(written: Path, expected: pd.DataFrame) -> None:
    got = pd.read_parquet(written)
    assert list(got.columns) == ["open_time", *FEATURE_NAMES]
    assert got["open_time"].to_numpy().tolist() == expected["open_time"].to_numpy().tolist()
    values = got[list(FEATURE_NAMES)].to_numpy()
    assert values.dtype == np.float32
    np.testing.assert_array_equal(values, expected[list(FEATURE_NAMES)].to_numpy())
    meta = pq.read_schema(written).metadata
    assert meta[b"xylen.feature_version"] == FEATURE_VERSION.encode()


def test_feather_input(tmp_path: Path, shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = shared_data / "freqtrade_binance_futures" / "ETH_USDT_USDT-5m-futures.feather"
    out = tmp_path / "eth.parquet"
    assert main(["--home", str(tmp_path), "features", "--input", str(src), "--output", str(out)]) == 0
    assert "interval 5m" in capsys.readouterr().out
    _assert_same(out, compute_features(read_freqtrade_feather(src), "5m"))


def test_store_selection_after_import(tmp_path: Path, shared_data: Path) -> None:
    src = shared_data / "freqtrade_binance_futures" / "BTC_USDT_USDT-5m-futures.feather"
    assert main(["--home", str(tmp_path), "data", "import", str(src)]) == 0
    out = tmp_path / "btc.parquet"
    args = ["--home", str(tmp_path), "features", "--input", "store:um/BTCUSDT/5m", "--output", str(out)]
    assert main(args) == 0
    _assert_same(out, compute_features(read_freqtrade_feather(src), "5m"))


def test_binance_vision_zip_with_1m_base(tmp_path: Path, shared_data: Path) -> None:
    src = (
        shared_data
        / "binance_vision_mirror/data/futures/um/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2022-09-05.zip"
    )
    out = tmp_path / "f.parquet"
    assert main(["features", "--input", str(src), "--output", str(out)]) == 0
    _assert_same(out, compute_features(read_kline_file(src), "1m"))


def test_bad_inputs(tmp_path: Path, shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x.parquet"
    hourly = shared_data / "freqtrade_binance_futures" / "BTC_USDT_USDT-1h-futures.feather"
    # a base interval the 15m/1h features cannot be built on: bad usage
    assert main(["features", "--input", str(hourly), "--output", str(out)]) == 2
    assert main(["features", "--input", str(tmp_path / "missing.csv"), "--output", str(out)]) == 2
    assert main(["features", "--input", "store:um/BTCUSDT", "--output", str(out)]) == 2
    # nothing stored there: a runtime failure, not a crash
    assert (
        main(["--home", str(tmp_path), "features", "--input", "store:um/BTCUSDT/5m", "--output", str(out)])
        == 1
    )
    assert not out.exists()
    assert capsys.readouterr().err.count("xylen: error:") == 4
