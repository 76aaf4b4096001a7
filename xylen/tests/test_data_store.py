"""The Parquet candle store on real candles: layout, round trip, determinism, conflicts, crash safety."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from xylen.data.parse import read_kline_file
from xylen.data.schema import CANDLE_COLUMNS, CANDLE_DTYPES, normalize_candles
from xylen.data.store import CandleStore
from xylen.errors import DataError, UsageError
from xylen.fileio import TEMP_PREFIX

REPO = Path(__file__).resolve().parents[2]


def _ms(text: str) -> int:
    return int(pd.Timestamp(text, tz="UTC").value // 1_000_000)


@pytest.fixture(scope="module")
def march(shared_data: Path) -> pd.DataFrame:
    return read_kline_file(shared_data / "binance_vision_monthly_csv" / "BTCUSDT-1h-2023-03.csv")


@pytest.fixture(scope="module")
def btc_5m(btc_5m_path: Path) -> pd.DataFrame:
    raw = pd.read_feather(btc_5m_path)
    frame = pd.DataFrame({"open_time": raw["date"].to_numpy(dtype="datetime64[ms]").astype("int64")})
    for col in ("open", "high", "low", "close", "volume"):
        frame[col] = raw[col].to_numpy()
    return normalize_candles(frame, "5m")


def test_round_trip_layout_and_dtypes(tmp_path: Path, march: pd.DataFrame) -> None:
    store = CandleStore(tmp_path / "candles")
    result = store.write("spot", "BTCUSDT", "1h", march)
    path = tmp_path / "candles/spot/BTCUSDT/1h/BTCUSDT-1h-2023-03.parquet"
    assert result.files_written == (path,)
    assert result.rows_added == 743
    back = store.read("spot", "BTCUSDT", "1h")
    pd.testing.assert_frame_equal(back, march)
    assert {c: str(t) for c, t in back.dtypes.items()} == CANDLE_DTYPES
    schema = pq.read_schema(path)
    assert tuple(schema.names) == CANDLE_COLUMNS
    assert not schema.metadata or b"pandas" not in schema.metadata
    assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "GZIP"
    # bounds: start inclusive, end exclusive
    part = store.read(
        "spot", "BTCUSDT", "1h", start_ms=_ms("2023-03-24 10:00"), end_ms=_ms("2023-03-24 15:00")
    )
    assert part["open_time"].tolist() == [_ms(f"2023-03-24 {h}:00") for h in (10, 11, 12, 14)]
    assert store.read("spot", "ETHUSDT", "1h").empty
    assert [(s.market, s.symbol, s.interval, s.months, s.rows) for s in store.list()] == [
        ("spot", "BTCUSDT", "1h", ("2023-03",), 743)
    ]


def test_idempotent_and_deterministic_bytes(tmp_path: Path, march: pd.DataFrame) -> None:
    store = CandleStore(tmp_path / "a")
    store.write("spot", "BTCUSDT", "1h", march)
    path = store.month_path("spot", "BTCUSDT", "1h", "2023-03")
    first, mtime = path.read_bytes(), path.stat().st_mtime_ns
    again = store.write("spot", "BTCUSDT", "1h", march)
    assert again.files_written == () and again.rows_added == 0
    assert path.read_bytes() == first and path.stat().st_mtime_ns == mtime
    # Another store, the same candles written in two overlapping halves: the same bytes.
    other = CandleStore(tmp_path / "b")
    other.write("spot", "BTCUSDT", "1h", march.iloc[400:])
    other.write("spot", "BTCUSDT", "1h", march.iloc[:500])
    assert other.month_path("spot", "BTCUSDT", "1h", "2023-03").read_bytes() == first


def test_conflicting_values_are_refused_unless_overwrite(tmp_path: Path, march: pd.DataFrame) -> None:
    store = CandleStore(tmp_path)
    store.write("spot", "BTCUSDT", "1h", march)
    path = store.month_path("spot", "BTCUSDT", "1h", "2023-03")
    before = path.read_bytes()
    changed = march.copy()
    changed.loc[100, "close"] += 0.01
    with pytest.raises(DataError, match=r"BTCUSDT-1h-2023-03\.parquet: 1 candle\(s\) already stored"):
        store.write("spot", "BTCUSDT", "1h", changed)
    assert path.read_bytes() == before
    result = store.write("spot", "BTCUSDT", "1h", changed, overwrite=True)
    assert result.rows_changed == 1
    pd.testing.assert_frame_equal(store.read("spot", "BTCUSDT", "1h"), changed)


def test_zstd_compression(tmp_path: Path, march: pd.DataFrame) -> None:
    store = CandleStore(tmp_path, compression="zstd")
    store.write("spot", "BTCUSDT", "1h", march)
    path = store.month_path("spot", "BTCUSDT", "1h", "2023-03")
    assert pq.ParquetFile(path).metadata.row_group(0).column(1).compression == "ZSTD"
    pd.testing.assert_frame_equal(CandleStore(tmp_path).read("spot", "BTCUSDT", "1h"), march)
    with pytest.raises(UsageError, match="compression"):
        CandleStore(tmp_path, compression="lz4")


def test_month_split(tmp_path: Path, btc_5m: pd.DataFrame) -> None:
    times = btc_5m["open_time"]
    window = btc_5m[(times >= _ms("2023-01-30")) & (times < _ms("2023-02-03"))].reset_index(drop=True)
    store = CandleStore(tmp_path)
    result = store.write("um", "BTCUSDT", "5m", window)
    assert [p.name for p in result.files_written] == [
        "BTCUSDT-5m-2023-01.parquet",
        "BTCUSDT-5m-2023-02.parquet",
    ]
    assert pq.ParquetFile(result.files_written[0]).metadata.num_rows == 2 * 288
    assert pq.ParquetFile(result.files_written[1]).metadata.num_rows == 2 * 288
    assert store.months("um", "BTCUSDT", "5m") == ["2023-01", "2023-02"]
    pd.testing.assert_frame_equal(store.read("um", "BTCUSDT", "5m"), window)
    feb = store.read("um", "BTCUSDT", "5m", start_ms=_ms("2023-02-01"))
    assert len(feb) == 576 and feb["open_time"].iloc[0] == _ms("2023-02-01")
    assert np.isnan(feb["trades"]).all()
    assert (feb["close_time"] == feb["open_time"] + 299_999).all()


def test_bad_series_names_are_usage_errors(tmp_path: Path, march: pd.DataFrame) -> None:
    store = CandleStore(tmp_path)
    with pytest.raises(UsageError, match="market"):
        store.write("futures", "BTCUSDT", "1h", march)
    with pytest.raises(UsageError, match="symbol"):
        store.write("um", "btc/usdt", "1h", march)
    with pytest.raises(UsageError, match="interval"):
        store.read("um", "BTCUSDT", "1M")


_WRITER = """
import sys
import pandas as pd
from xylen.data.store import CandleStore
from xylen.tests.test_data_store import _versions
root, feather = sys.argv[1], sys.argv[2]
versions = _versions(feather)
store = CandleStore(root)
print("ready", flush=True)
i = 0
while True:
    store.write("um", "BTCUSDT", "5m", versions[i % 2], overwrite=True)
    i += 1
"""


def _versions(feather: str) -> list[pd.DataFrame]:
    """Two different versions of Jan+Feb 2023 BTC 5m candles (real, and real shifted by 1.0)."""
    raw = pd.read_feather(feather)
    raw = raw[raw["date"] < pd.Timestamp("2023-03-01", tz="UTC")]
    frame = pd.DataFrame({"open_time": raw["date"].to_numpy(dtype="datetime64[ms]").astype("int64")})
    for col in ("open", "high", "low", "close", "volume"):
        frame[col] = raw[col].to_numpy()
    a = normalize_candles(frame, "5m")
    b = a.copy()
    for col in ("open", "high", "low", "close"):
        b[col] = b[col] + 1.0
    return [a, b]


def test_sigkill_never_leaves_a_torn_file(tmp_path: Path, btc_5m_path: Path) -> None:
    root = tmp_path / "candles"
    versions = _versions(str(btc_5m_path))
    by_month = {
        month: [v[v["open_time"].between(lo, hi - 1)].reset_index(drop=True) for v in versions]
        for month, lo, hi in (
            ("2023-01", _ms("2023-01-01"), _ms("2023-02-01")),
            ("2023-02", _ms("2023-02-01"), _ms("2023-03-01")),
        )
    }
    store = CandleStore(root)
    folder = store.series_dir("um", "BTCUSDT", "5m")
    rng = random.Random(20240514)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    seen_files = seen_temps = 0
    last_pid = 0
    for _ in range(5):
        child = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(root), str(btc_5m_path)],
            stdout=subprocess.PIPE,
            env=env,
            cwd=REPO,
        )
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.05, 0.4))
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        last_pid = child.pid
        names = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        seen_temps += sum(n.startswith(TEMP_PREFIX) for n in names)
        for name in names:
            if name.startswith(TEMP_PREFIX):
                continue
            month = name.removeprefix("BTCUSDT-5m-").removesuffix(".parquet")
            got = store._read_file(folder / name)
            assert any(got.equals(v) for v in by_month[month]), f"{name} matches no written version"
            seen_files += 1
        listed = store.list()
        assert all(s.months == tuple(sorted(s.months)) for s in listed)
        assert sum(s.rows for s in listed) == sum(
            len(by_month[m][0]) for m in by_month if store.month_path("um", "BTCUSDT", "5m", m).exists()
        )
    assert seen_files > 0
    # A stale temporary file from a dead writer is never read and is removed by the next write.
    folder.mkdir(parents=True, exist_ok=True)
    stale = folder / f"{TEMP_PREFIX}BTCUSDT-5m-2023-01.parquet.{last_pid}.deadbeef"
    stale.write_bytes(b"PAR1 torn")
    assert [s.months for s in store.list()] in ([("2023-01", "2023-02")], [("2023-01",)])
    store.write("um", "BTCUSDT", "5m", versions[0], overwrite=True)
    assert not [p for p in folder.iterdir() if p.name.startswith(TEMP_PREFIX)]
    pd.testing.assert_frame_equal(store.read("um", "BTCUSDT", "5m"), versions[0])
    print(f"files checked {seen_files}, temp files seen {seen_temps}")
