"""The replay feed: path rule, partial candles, aggregation, funding rates, the clock, no look-ahead."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paper_exchange.engine.errors import ApiError
from paper_exchange.feed import ReplayClock, ReplayFeed
from paper_exchange.tests import DAY, T0, T2023, candles, funding, make_feed
from xylen.paths import shared_data_dir

STEP = 300_000


@pytest.fixture(scope="module")
def feed() -> ReplayFeed:
    return make_feed(("BTCUSDT", "ETHUSDT"), T0, 2)


def test_path_rule_green_and_red_candles(feed: ReplayFeed) -> None:
    frame = candles("BTCUSDT", T0, 2)
    for i in range(40):
        row = frame.iloc[i]
        t = int(row.open_time)
        first, second = (row.low, row.high) if row.close >= row.open else (row.high, row.low)
        assert feed.price_at("BTCUSDT", t) == row.open
        assert feed.price_at("BTCUSDT", t + STEP // 3) == pytest.approx(first)
        assert feed.price_at("BTCUSDT", t + 2 * STEP // 3) == pytest.approx(second)
        assert feed.price_at("BTCUSDT", t + STEP - 1) == pytest.approx(row.close, abs=abs(row.close - second))
        mid = feed.price_at("BTCUSDT", t + STEP // 6)
        assert mid == pytest.approx((row.open + first) / 2)


def test_no_price_before_data_and_flat_after(feed: ReplayFeed) -> None:
    assert feed.price_at("BTCUSDT", T0 - 1) is None
    last = candles("BTCUSDT", T0, 2).iloc[-1]
    assert feed.price_at("BTCUSDT", feed.end_ms("BTCUSDT") + 10 * STEP) == last.close


@pytest.mark.parametrize("gap", [False, True])
def test_candle_index_and_prices_with_and_without_gaps(gap: bool) -> None:
    """The candle containing a time, found by arithmetic on a gap-free series and by search on one
    with a gap, is the one a search over the open times finds; prices in a gap stay at the last
    close."""
    frame = candles("BTCUSDT", T0, 1)
    if gap:
        frame = frame.drop(index=range(100, 112)).reset_index(drop=True)
    one = ReplayFeed({"BTCUSDT": frame})
    series = one._series["BTCUSDT"]
    assert series._gapless is not gap
    ot = frame["open_time"].to_numpy(np.int64)
    probes = [T0 - STEP, T0 - 1, T0, T0 + 1, int(ot[-1]) + STEP + 7, int(ot[-1]) + 10 * STEP]
    probes += [int(t) + d for t in ot[95:120] for d in (0, 1, STEP // 3, STEP - 1)]
    for ts in probes:
        assert series.index(ts) == int(np.searchsorted(ot, ts, side="right")) - 1, ts
    if gap:  # the 12 missing candles: flat at the close of the candle before them
        before = frame.iloc[99]
        assert one.price_at("BTCUSDT", int(before.open_time) + 3 * STEP) == before.close


def test_klines_closed_rows_match_the_data(feed: ReplayFeed) -> None:
    frame = candles("BTCUSDT", T0, 2)
    now = T0 + DAY
    rows = feed.klines("BTCUSDT", "5m", now, start=T0, limit=10)
    assert [r[0] for r in rows] == list(frame.open_time[:10])
    for r, (_, c) in zip(rows, frame.iloc[:10].iterrows(), strict=True):
        assert r[1:6] == (c.open, c.high, c.low, c.close, c.volume)
        assert r[6] == r[0] + STEP - 1


def test_partial_candle_shows_only_the_path_so_far(feed: ReplayFeed) -> None:
    frame = candles("BTCUSDT", T0, 2)
    i = 300
    row = frame.iloc[i]
    t = int(row.open_time)
    now = t + STEP // 2  # after the first leg, half way through the second
    last = feed.klines("BTCUSDT", "5m", now, limit=2)[-1]
    assert last[0] == t
    first = row.low if row.close >= row.open else row.high
    price = feed.price_at("BTCUSDT", now)
    assert last[1] == row.open
    assert last[2] == pytest.approx(max(row.open, first, price))
    assert last[3] == pytest.approx(min(row.open, first, price))
    assert last[4] == pytest.approx(price)
    assert last[5] == pytest.approx(row.volume / 2)


def test_aggregated_klines_equal_the_coarse_files(feed: ReplayFeed) -> None:
    import pandas as pd

    hourly = pd.read_feather(
        shared_data_dir() / "freqtrade_binance_futures" / "BTC_USDT_USDT-1h-futures.feather"
    )
    ms = hourly["date"].astype("int64") // 1_000_000
    hourly = hourly[(ms >= T0) & (ms < T0 + DAY)]
    rows = feed.klines("BTCUSDT", "1h", T0 + DAY, start=T0, limit=24)
    assert len(rows) == 24
    for r, (_, h) in zip(rows, hourly.iterrows(), strict=True):
        assert r[1:5] == (h.open, h.high, h.low, h.close)
        assert r[5] == pytest.approx(h.volume)


def test_invalid_interval(feed: ReplayFeed) -> None:
    with pytest.raises(ApiError) as err:
        feed.klines("BTCUSDT", "7m", T0 + DAY)
    assert err.value.code == -1120


def test_funding_rates_are_rounded_to_the_8h_boundary() -> None:
    f = ReplayFeed({"BTCUSDT": candles("BTCUSDT", T2023, 1)}, "5m", {"BTCUSDT": funding("BTCUSDT")})
    raw = funding("BTCUSDT")
    jittered = raw[raw["open_time"] == T2023 + 8 * 3_600_000 + 8]
    assert len(jittered) == 1  # 2023-01-01 08:00:00.008 in the real file
    assert f.funding_rate("BTCUSDT", T2023 + 8 * 3_600_000) == Decimal(repr(float(jittered["open"].iloc[0])))
    assert f.funding_rate("BTCUSDT", 10**13) == Decimal("0.0001")


def test_stepped_and_scaled_clock() -> None:
    wall = [1000.0]
    clock = ReplayClock(T0, speed=60, wall=lambda: wall[0], end_ms=T0 + DAY)
    wall[0] += 10
    assert clock.now_ms() == T0 + 600_000
    wall[0] += 10**6
    assert clock.now_ms() == T0 + DAY
    stepped = ReplayClock(T0)
    stepped.step_to(T0 + 5)
    assert stepped.now_ms() == T0 + 5
    with pytest.raises(ValueError):
        stepped.step_to(T0)


@settings(max_examples=40, deadline=None)
@given(
    offset=st.integers(min_value=0, max_value=DAY - 1), interval=st.sampled_from(["5m", "15m", "1h", "4h"])
)
def test_no_look_ahead(offset: int, interval: str) -> None:
    """Results at ``now`` are identical when every candle opening after ``now`` is removed."""
    now = T0 + DAY // 2 + offset
    full = make_feed(("BTCUSDT",), T0, 2)
    frame = candles("BTCUSDT", T0, 2)
    cut = ReplayFeed({"BTCUSDT": frame[frame["open_time"] <= now]}, "5m")
    rows = full.klines("BTCUSDT", interval, now, end=now + DAY, limit=50)
    assert rows == cut.klines("BTCUSDT", interval, now, end=now + DAY, limit=50)
    assert rows[-1][0] <= now
    assert rows[-1][4] == pytest.approx(full.price_at("BTCUSDT", now))
    assert full.ticker_24h("BTCUSDT", now) == cut.ticker_24h("BTCUSDT", now)
    highs = np.array([r[2] for r in rows])
    assert highs.max() <= frame[frame["open_time"] <= now]["high"].max()
