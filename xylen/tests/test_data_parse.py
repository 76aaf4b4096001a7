"""Parsing of real binance.vision kline files and the quality check on the real 2023-03 outage."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xylen.data.parse import (
    KLINE_COLUMNS,
    parse_kline_csv,
    parse_kline_filename,
    read_kline_file,
    read_kline_zip,
)
from xylen.data.quality import check_candles
from xylen.data.schema import CANDLE_COLUMNS, CANDLE_DTYPES
from xylen.errors import DataError

H = 3_600_000


def _mirror(shared: Path) -> Path:
    return shared / "binance_vision_mirror" / "data"


def _zip_csv(path: Path) -> bytes:
    with zipfile.ZipFile(path) as archive:
        return archive.read(archive.namelist()[0])


def test_filename_parsing() -> None:
    assert parse_kline_filename("BTCUSDT-5m-2024-01.zip") == ("BTCUSDT", "5m", "2024-01")
    assert parse_kline_filename("/x/BTCUSDT-1m-2022-09-05.csv") == ("BTCUSDT", "1m", "2022-09-05")
    named = parse_kline_filename("BTCUSD_PERP-1m-2022-10-24.zip")
    assert named.symbol == "BTCUSD_PERP" and not named.is_monthly
    assert parse_kline_filename("BTCUSDT-1h-2023-03.csv").is_monthly
    for bad in (
        "BTCUSDT-5m.zip",
        "btcusdt-5m-2024-01.zip",
        "BTCUSDT-5x-2024-01.zip",
        "BTCUSDT-0m-2024-01.zip",
    ):
        with pytest.raises(DataError, match="BTCUSDT"):
            parse_kline_filename(bad)


def test_spot_without_header_and_um_with_header_give_the_same_columns(shared_data: Path) -> None:
    spot_zip = _mirror(shared_data) / "spot/daily/klines/BTCUSDT/1h/BTCUSDT-1h-2022-09-07.zip"
    um_zip = _mirror(shared_data) / "futures/um/daily/klines/ETHUSDT/1h/ETHUSDT-1h-2022-08-24.zip"
    assert not _zip_csv(spot_zip).startswith(b"open_time")
    assert _zip_csv(um_zip).startswith(b"open_time")
    spot, um = read_kline_file(spot_zip), read_kline_file(um_zip)
    for frame in (spot, um):
        assert tuple(frame.columns) == CANDLE_COLUMNS
        assert {c: str(t) for c, t in frame.dtypes.items()} == CANDLE_DTYPES
        assert len(frame) == 24
        assert (frame["close_time"] == frame["open_time"] + H - 1).all()
        assert frame["trades"].notna().all()
    assert spot["open_time"].iloc[0] == 1662508800000  # 2022-09-07 00:00 UTC
    assert spot["open"].iloc[0] == 18790.61
    assert um["open"].iloc[0] == 1664.19
    assert check_candles(spot, "1h").ok and check_candles(um, "1h").ok


def test_zip_csv_and_bytes_agree(shared_data: Path, tmp_path: Path) -> None:
    zip_path = _mirror(shared_data) / "futures/um/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2022-09-05.zip"
    data = _zip_csv(zip_path)
    csv_path = tmp_path / "BTCUSDT-1m-2022-09-05.csv"
    csv_path.write_bytes(data)
    from_zip = read_kline_file(zip_path)
    pd.testing.assert_frame_equal(from_zip, read_kline_file(csv_path))
    pd.testing.assert_frame_equal(from_zip, read_kline_zip(zip_path.read_bytes(), "x.zip"))
    pd.testing.assert_frame_equal(from_zip, parse_kline_csv(data))
    assert len(from_zip) == 1440


def test_microsecond_timestamps_become_milliseconds(shared_data: Path) -> None:
    zip_path = _mirror(shared_data) / "spot/daily/klines/ETHUSDT/1m/ETHUSDT-1m-2022-08-14.zip"
    lines = _zip_csv(zip_path).decode().splitlines()[:50]
    micro = []
    for line in lines:
        fields = line.split(",")
        fields[0] = str(int(fields[0]) * 1000)
        fields[6] = str(int(fields[6]) * 1000 + 999)
        micro.append(",".join(fields))
    assert len(micro[0].split(",")[0]) == 16
    expected = parse_kline_csv("\n".join(lines).encode())
    got = parse_kline_csv("\n".join(micro).encode())
    pd.testing.assert_frame_equal(got, expected)
    assert got["open_time"].iloc[0] == 1660435200000


def test_real_march_2023_outage(shared_data: Path) -> None:
    frame = read_kline_file(shared_data / "binance_vision_monthly_csv" / "BTCUSDT-1h-2023-03.csv")
    assert len(frame) == 743
    report = check_candles(frame, "1h")
    noon = int(pd.Timestamp("2023-03-24 12:00", tz="UTC").value // 1_000_000)
    assert len(report.gaps) == 1
    gap = report.gaps[0]
    assert (gap.start, gap.end, gap.count) == (noon + H, noon + H, 1)
    assert len(report.short_candles) == 1
    assert report.short_candles[0].start == noon
    assert not report.ohlc
    assert len(report.issues) == 2
    text = str(report)
    assert len(text.splitlines()) == 3
    assert "2023-03-24 13:00" in text and "12:39:41.646" in text
    # The check reports, it never fills.
    assert len(frame) == 743


def test_ohlc_sanity_is_reported(shared_data: Path) -> None:
    frame = read_kline_file(shared_data / "binance_vision_monthly_csv" / "BTCUSDT-1h-2023-01.csv")
    assert check_candles(frame, "1h").ok
    broken = frame.copy()
    broken.loc[5, "high"] = broken.loc[5, ["open", "close"]].max() - 1.0
    broken.loc[9, "low"] = broken.loc[9, ["open", "close"]].min() + 1.0
    report = check_candles(broken, "1h")
    assert [i.start for i in report.ohlc] == [
        int(broken.loc[5, "open_time"]),
        int(broken.loc[9, "open_time"]),
    ]
    assert "high < max(open, close)" in str(report.ohlc[0])
    assert "low > min(open, close)" in str(report.ohlc[1])


def test_malformed_files_name_the_file_and_problem(shared_data: Path, tmp_path: Path) -> None:
    zip_path = _mirror(shared_data) / "futures/um/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2022-09-05.zip"
    lines = _zip_csv(zip_path).decode().splitlines()
    short_row = tmp_path / "BTCUSDT-1m-2022-09-05.csv"
    short_row.write_text("\n".join([*lines[:5], ",".join(lines[5].split(",")[:4]), *lines[6:10]]))
    with pytest.raises(DataError, match=r"BTCUSDT-1m-2022-09-05\.csv: line 6 has missing fields"):
        read_kline_file(short_row)
    text_value = tmp_path / "BTCUSDT-1m-2022-09-06.csv"
    text_value.write_text(
        "\n".join([*lines[:3], lines[3].replace(lines[3].split(",")[2], "abc"), *lines[4:8]])
    )
    with pytest.raises(DataError, match=r"BTCUSDT-1m-2022-09-06\.csv: malformed"):
        read_kline_file(text_value)
    with pytest.raises(DataError, match="empty"):
        parse_kline_csv(b"", name="empty.csv")
    with pytest.raises(DataError, match="no rows"):
        parse_kline_csv((",".join(KLINE_COLUMNS) + "\n").encode(), name="head.csv")
    with pytest.raises(DataError, match="duplicate"):
        parse_kline_csv("\n".join([lines[1], lines[1]]).encode(), name="dup.csv")
    two = io.BytesIO()
    with zipfile.ZipFile(two, "w") as archive:
        archive.writestr("a.csv", "\n".join(lines[1:3]))
        archive.writestr("b.csv", "\n".join(lines[3:5]))
    with pytest.raises(DataError, match="exactly one CSV"):
        read_kline_zip(two.getvalue(), "two.zip")
    with pytest.raises(DataError, match="corrupted zip"):
        read_kline_zip(b"PK\x03\x04 not a zip", "bad.zip")


def test_parsed_values_are_exact_decimals(shared_data: Path) -> None:
    zip_path = _mirror(shared_data) / "futures/cm/daily/klines/BTCUSD_PERP/1m/BTCUSD_PERP-1m-2022-10-24.zip"
    frame = read_kline_file(zip_path)
    first = _zip_csv(zip_path).decode().splitlines()[1].split(",")
    assert frame["open"].iloc[0] == float(first[1])
    assert frame["trades"].iloc[0] == float(first[8])
    assert frame["taker_buy_quote_volume"].iloc[0] == float(first[10])
    assert np.all(np.diff(frame["open_time"].to_numpy()) == 60_000)
