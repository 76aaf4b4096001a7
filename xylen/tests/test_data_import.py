"""Import of real freqtrade feather/JSON files and binance.vision archives into the store."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xylen.cli import data as data_cli
from xylen.data.importers import import_file, parse_freqtrade_filename
from xylen.data.parse import read_kline_file
from xylen.data.store import CandleStore
from xylen.errors import DataError, UsageError

OHLCV = ["open", "high", "low", "close", "volume"]


def _ms(dates: pd.Series) -> np.ndarray:
    return dates.to_numpy(dtype="datetime64[ms]").astype("int64")


def test_freqtrade_names() -> None:
    assert parse_freqtrade_filename("BTC_USDT_USDT-5m-futures.feather") == ("um", "BTCUSDT", "5m", "futures")
    assert parse_freqtrade_filename("BTC_USDT-5m.json") == ("spot", "BTCUSDT", "5m", "spot")
    assert parse_freqtrade_filename("BTC_USD_BTC-1h-futures.json") == ("cm", "BTCUSD", "1h", "futures")
    assert parse_freqtrade_filename("ETH_USDT_USDT-8h-mark.feather").kind == "mark"
    with pytest.raises(DataError, match="freqtrade"):
        parse_freqtrade_filename("BTCUSDT-5m-futures.feather")


def test_feather_import_round_trips_exactly_and_is_idempotent(btc_5m_path: Path, tmp_path: Path) -> None:
    raw = pd.read_feather(btc_5m_path)
    store = CandleStore(tmp_path / "candles")
    result = import_file(btc_5m_path, store)
    assert (result.market, result.symbol, result.interval) == ("um", "BTCUSDT", "5m")
    assert result.rows == result.rows_stored == 143_900
    assert result.report.ok
    back = store.read("um", "BTCUSDT", "5m")
    assert len(back) == 143_900
    np.testing.assert_array_equal(back["open_time"].to_numpy(), _ms(raw["date"]))
    np.testing.assert_array_equal(back[OHLCV].to_numpy(), raw[OHLCV].to_numpy())
    np.testing.assert_array_equal(back["close_time"].to_numpy(), back["open_time"].to_numpy() + 299_999)
    assert back[["quote_volume", "trades", "taker_buy_volume", "taker_buy_quote_volume"]].isna().all().all()
    [series] = store.list()
    assert series.months[0] == "2023-01" and series.months[-1] == "2024-05" and series.rows == 143_900

    files = sorted(store.series_dir("um", "BTCUSDT", "5m").iterdir())
    before = {p.name: p.read_bytes() for p in files}
    again = import_file(btc_5m_path, store)
    assert again.rows_stored == 0
    assert {
        p.name: p.read_bytes() for p in sorted(store.series_dir("um", "BTCUSDT", "5m").iterdir())
    } == before


def test_mark_and_funding_files_are_refused(shared_data: Path, tmp_path: Path) -> None:
    store = CandleStore(tmp_path)
    folder = shared_data / "freqtrade_binance_futures"
    with pytest.raises(DataError, match="mark-price"):
        import_file(folder / "BTC_USDT_USDT-8h-mark.feather", store)
    with pytest.raises(DataError, match="funding rates"):
        import_file(folder / "ETH_USDT_USDT-8h-funding_rate.feather", store)
    assert store.list() == []


def test_freqtrade_json_import(shared_data: Path, tmp_path: Path) -> None:
    raw = pd.read_feather(shared_data / "freqtrade_binance_futures" / "ETH_USDT_USDT-5m-futures.feather")
    day = raw[(raw["date"] >= "2023-11-10") & (raw["date"] < "2023-11-11")]
    rows = [
        [int(t), *map(float, vals)] for t, vals in zip(_ms(day["date"]), day[OHLCV].to_numpy(), strict=True)
    ]
    futures = tmp_path / "ETH_USDT_USDT-5m-futures.json"
    futures.write_text(json.dumps(rows))
    spot = tmp_path / "ETH_USDT-5m.json"
    spot.write_text(json.dumps(rows[:10]))
    store = CandleStore(tmp_path / "candles")
    result = import_file(futures, store)
    assert (result.market, result.symbol, result.interval, result.rows) == ("um", "ETHUSDT", "5m", 288)
    back = store.read("um", "ETHUSDT", "5m")
    np.testing.assert_array_equal(back["open_time"].to_numpy(), _ms(day["date"]))
    np.testing.assert_array_equal(back[OHLCV].to_numpy(), day[OHLCV].to_numpy())
    assert import_file(spot, store).market == "spot"
    assert len(store.read("spot", "ETHUSDT", "5m")) == 10
    broken = tmp_path / "ETH_USDT-1h.json"
    broken.write_text(json.dumps([[1, 2, 3]]))
    with pytest.raises(DataError, match=r"ETH_USDT-1h\.json"):
        import_file(broken, store)


def test_binance_vision_files(shared_data: Path, tmp_path: Path) -> None:
    store = CandleStore(tmp_path)
    spot_zip = (
        shared_data / "binance_vision_mirror/data/spot/daily/klines/BTCUSDT/1h/BTCUSDT-1h-2022-09-07.zip"
    )
    result = import_file(spot_zip, store, market="spot")
    assert (result.market, result.symbol, result.interval, result.rows) == ("spot", "BTCUSDT", "1h", 24)
    pd.testing.assert_frame_equal(store.read("spot", "BTCUSDT", "1h"), read_kline_file(spot_zip))
    march = shared_data / "binance_vision_monthly_csv" / "BTCUSDT-1h-2023-03.csv"
    result = import_file(march, store)
    assert result.market == "um"  # the default for binance.vision files
    assert len(result.report.gaps) == 1 and len(result.report.short_candles) == 1
    assert len(store.read("um", "BTCUSDT", "1h")) == 743  # the gap is reported, not filled
    with pytest.raises(UsageError, match="no such file"):
        import_file(tmp_path / "BTCUSDT-1h-2023-04.csv", store)
    with pytest.raises(UsageError, match="market"):
        import_file(march, store, market="futures")


def test_cli_import_several_files(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--home")
    data_cli.register(parser.add_subparsers(dest="command", required=True))
    months = [shared_data / "binance_vision_monthly_csv" / f"BTCUSDT-1h-2023-0{m}.csv" for m in (1, 2)]
    args = parser.parse_args(
        ["--home", str(tmp_path), "data", "import", "--market", "spot", *map(str, months)]
    )
    assert args.func(args) == 0
    assert "2 file(s) imported, 1416 candle(s) new or changed" in capsys.readouterr().out
    store = CandleStore(tmp_path / "candles")
    assert [(s.market, s.months, s.rows) for s in store.list()] == [("spot", ("2023-01", "2023-02"), 1416)]
    args = parser.parse_args(["--home", str(tmp_path), "data", "list"])
    assert args.func(args) == 0
    assert "spot BTCUSDT" in capsys.readouterr().out
