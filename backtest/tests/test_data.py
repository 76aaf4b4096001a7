"""The backtest's candle sources: one candle file in each format ``xylen data import`` reads gives the
same candles as the shipped freqtrade file; any other file is a usage error."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from backtest.data import history_of, load_candles, shipped_candle_file, span_cut_note
from xylen.errors import UsageError

SYMBOL = "BTCUSDT"
STEP = 300_000


@pytest.fixture(scope="module")
def day(shared_data: Path) -> pd.DataFrame:
    """A day of the shipped BTCUSDT 5m candles, as the shipped file gives them."""
    frame, _ = load_candles(SYMBOL)
    return frame.iloc[1000:1288].reset_index(drop=True)


def _kline_csv(frame: pd.DataFrame) -> str:
    """binance.vision's kline CSV (with its header): 12 columns, close time = open + step - 1."""
    lines = ["open_time,open,high,low,close,volume,close_time,quote_volume,count,"
             "taker_buy_volume,taker_buy_quote_volume,ignore"]  # fmt: skip
    for r in frame.itertuples(index=False):
        lines.append(
            f"{r.open_time},{r.open!r},{r.high!r},{r.low!r},{r.close!r},{r.volume!r},"
            f"{r.open_time + STEP - 1},0,0,0,0,0"
        )
    return "\n".join(lines) + "\n"


def _ms(day: str) -> int:
    return int(pd.Timestamp(day, tz="UTC").value // 1_000_000)


def test_every_candle_file_format_gives_the_same_candles(day: pd.DataFrame, tmp_path: Path) -> None:
    csv = tmp_path / "BTCUSDT-5m-2023-01-04.csv"
    csv.write_text(_kline_csv(day))
    archive = tmp_path / "BTCUSDT-5m-2023-01-04.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr(csv.name, _kline_csv(day))
    rows = [[int(r.open_time), r.open, r.high, r.low, r.close, r.volume] for r in day.itertuples(index=False)]
    js = tmp_path / "BTC_USDT_USDT-5m-futures.json"
    js.write_text(json.dumps(rows))
    feather = tmp_path / "BTC_USDT_USDT-5m-futures.feather"
    pd.read_feather(shipped_candle_file(SYMBOL)).iloc[1000:1288].reset_index(drop=True).to_feather(feather)
    for path in (csv, archive, js, feather):
        frame, funding_dir = load_candles(SYMBOL, data=path)
        assert funding_dir == tmp_path
        pd.testing.assert_frame_equal(frame, day, obj=path.name)


def test_an_unknown_candle_file_is_a_usage_error(tmp_path: Path) -> None:
    other = tmp_path / "candles.parquet"
    other.write_bytes(b"PAR1")
    with pytest.raises(UsageError, match=r"--data .*candles\.parquet: unsupported candle file"):
        load_candles(SYMBOL, data=other)


def test_a_candle_file_of_another_interval_is_refused(shared_data: Path) -> None:
    """Read as 5m candles, a 15m file would run a 5m backtest on candles 15 minutes apart."""
    quarter_hours = shipped_candle_file("BTCUSDT", "15m")
    with pytest.raises(UsageError, match=r"its candles are 15m apart, not 5m \(--interval\)"):
        load_candles("BTCUSDT", "5m", quarter_hours)
    frame, _ = load_candles("BTCUSDT", "15m", quarter_hours)
    assert (frame["open_time"].diff().dropna() == 900_000).mean() > 0.99


def test_a_candle_file_named_for_another_symbol_is_refused(shared_data: Path) -> None:
    with pytest.raises(UsageError, match="its name says ETHUSDT candles, the run is BTCUSDT"):
        load_candles("BTCUSDT", "5m", shipped_candle_file("ETHUSDT"))
    frame, _ = load_candles("ETHUSDT", "5m", shipped_candle_file("ETHUSDT"))
    assert len(frame) > 100_000


def test_a_span_past_the_data_runs_on_what_there_is_and_says_so(shared_data: Path) -> None:
    candles, _ = load_candles("BTCUSDT")
    inside = history_of(candles, "BTCUSDT", _ms("2024-05-10"), _ms("2024-05-11"))
    assert span_cut_note(inside, _ms("2024-05-10"), _ms("2024-05-11")) is None
    assert span_cut_note(inside, _ms("2024-05-10") + 120_000, _ms("2024-05-11")) is None  # within a candle
    past = history_of(candles, "BTCUSDT", _ms("2024-05-10"), _ms("2024-06-01"))
    assert span_cut_note(past, _ms("2024-05-10"), _ms("2024-06-01")) == (
        "note: of the span asked (2024-05-10 00:00 to 2024-06-01 00:00 UTC) the BTCUSDT 5m data covers"
        " only 2024-05-10 00:00 to 2024-05-14 15:40; the run covers that"
    )
