"""Matching on real candles: algo triggers, resting limits, partial fills, takers."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest

from paper_exchange.engine import Engine, EngineConfig
from paper_exchange.engine.models import AlgoStatus, OrderStatus
from paper_exchange.tests import DAY, T0, candles, dec, make_feed

KEY = "acct"
STEP = 300_000
START = T0 + DAY


def engine(**config: object) -> Engine:
    return Engine(make_feed(("BTCUSDT",), T0, 3), EngineConfig(**config), START)  # type: ignore[arg-type]


def row(i: int) -> object:
    return candles("BTCUSDT", T0, 3).iloc[288 + i]


def test_market_order_fills_at_path_price_with_slippage_and_taker_fee() -> None:
    eng = engine()
    order = eng.place_order(KEY, "BTCUSDT", "BUY", "MARKET", dec("0.01"), None, "GTC")
    eng.finish()
    open_price = dec(row(0).open)  # type: ignore[attr-defined]
    expected = (open_price * Decimal("1.0001") / Decimal("0.1")).to_integral_value() * Decimal("0.1")
    assert order.status is OrderStatus.FILLED
    assert order.avg_price() == expected
    trade = eng.trades[KEY][0]
    assert trade.commission == (expected * dec("0.01") * dec("0.0005")).quantize(Decimal("1e-8"))
    assert not trade.maker


def test_stop_inside_the_candle_triggers_and_outside_does_not() -> None:
    eng = engine()
    eng.place_order(KEY, "BTCUSDT", "BUY", "MARKET", dec("0.01"), None, "GTC")
    c = row(0)
    low = dec(c.low)  # type: ignore[attr-defined]
    inside = eng.place_algo(
        KEY, "BTCUSDT", "SELL", "STOP_MARKET", None, None, low + dec("0.1"), close_position=True
    )
    outside = eng.place_algo(KEY, "BTCUSDT", "SELL", "STOP_MARKET", dec("0.01"), None, low - dec("0.1"))
    eng.advance(START + STEP)
    assert inside.status is AlgoStatus.FINISHED
    assert inside.actual_qty == dec("0.01")
    assert eng.orders[inside.actual_order_id or 0].status is OrderStatus.FILLED
    assert outside.status is AlgoStatus.NEW
    assert eng.positions[KEY][("BTCUSDT", "BOTH")].amount == 0


def test_close_position_stop_without_position_expires() -> None:
    eng = engine()
    c = row(0)
    algo = eng.place_algo(KEY, "BTCUSDT", "SELL", "STOP_MARKET", None, None, dec(c.low), close_position=True)  # type: ignore[attr-defined]
    eng.advance(START + STEP)
    assert algo.status is AlgoStatus.EXPIRED


def test_resting_limit_fills_exactly_when_the_path_crosses_it() -> None:
    eng = engine()
    c = row(0)
    assert c.close >= c.open  # type: ignore[attr-defined]  # green: open -> low in the first third
    price = dec(c.low) + dec("10")  # type: ignore[attr-defined]
    order = eng.place_order(KEY, "BTCUSDT", "BUY", "LIMIT", dec("0.01"), price, "GTC")
    frac = (float(price) - c.open) / (c.low - c.open)  # type: ignore[attr-defined]
    when = START + math.ceil(frac * (STEP // 3))
    eng.advance(when - 1)
    assert order.status is OrderStatus.NEW
    eng.advance(when)
    assert order.status is OrderStatus.FILLED
    trade = eng.trades[KEY][-1]
    assert trade.price == price and trade.maker and trade.time == when
    assert trade.commission == (price * dec("0.01") * dec("0.0002")).quantize(Decimal("1e-8"))


def test_limit_below_the_low_never_fills() -> None:
    eng = engine()
    c = row(0)
    order = eng.place_order(KEY, "BTCUSDT", "BUY", "LIMIT", dec("0.01"), dec(c.low) - dec("0.1"), "GTC")  # type: ignore[attr-defined]
    eng.advance(START + STEP)
    assert order.status is OrderStatus.NEW


def test_large_order_fills_partially_with_participation() -> None:
    eng = engine(balance=Decimal(10_000_000))
    c = row(0)
    price = dec(c.open) - dec("1")  # type: ignore[attr-defined]
    order = eng.place_order(KEY, "BTCUSDT", "BUY", "LIMIT", dec("1000"), price, "GTC")
    eng.advance(START + STEP // 3)  # the first leg only
    leg_volume = Decimal(repr(float(c.volume) * (STEP // 3) / STEP))  # type: ignore[attr-defined]
    expected = (leg_volume * dec("0.1")).quantize(Decimal("0.001"), rounding="ROUND_DOWN")
    assert order.status is OrderStatus.PARTIALLY_FILLED
    assert order.executed_qty == expected
    eng.advance(START + 12 * STEP)
    trades = eng.trades[KEY]
    assert len(trades) >= 2 and order.executed_qty > expected
    assert order.status is OrderStatus.PARTIALLY_FILLED
    assert order.executed_qty == sum(t.qty for t in trades) < order.orig_qty
    frame = candles("BTCUSDT", T0, 3).set_index("open_time")
    for t in trades:  # each fill within 10 % of the volume of its leg (a third of the candle)
        candle_volume = float(frame.loc[(t.time - 1) // STEP * STEP, "volume"])
        assert float(t.qty) <= candle_volume / 3 * 0.1 + 1e-9


def test_trailing_stop_follows_the_high_and_triggers_on_the_pullback() -> None:
    eng = engine()
    eng.place_order(KEY, "BTCUSDT", "BUY", "MARKET", dec("0.01"), None, "GTC")
    algo = eng.place_algo(
        KEY,
        "BTCUSDT",
        "SELL",
        "TRAILING_STOP_MARKET",
        dec("0.01"),
        None,
        None,
        reduce_only=True,
        callback_rate=dec("0.5"),
    )
    frame = candles("BTCUSDT", T0, 3).iloc[288:]
    eng.advance(START + DAY - STEP)
    assert algo.status is AlgoStatus.FINISHED
    fired = algo.trigger_time
    seen = frame[frame["open_time"] < fired]
    peak = max(seen["high"].max(), frame.iloc[0].open)
    assert float(algo.extreme) <= peak
    assert float(eng.orders[algo.actual_order_id or 0].avg_price()) == pytest.approx(
        float(algo.extreme) * 0.995, rel=2e-3
    )


def test_hedge_mode_positions_are_separate() -> None:
    eng = engine()
    eng.set_dual_side(KEY, True)
    eng.place_order(KEY, "BTCUSDT", "BUY", "MARKET", dec("0.01"), None, "GTC", "LONG")
    eng.place_order(KEY, "BTCUSDT", "SELL", "MARKET", dec("0.02"), None, "GTC", "SHORT")
    book = eng.positions[KEY]
    assert book[("BTCUSDT", "LONG")].amount == dec("0.01")
    assert book[("BTCUSDT", "SHORT")].amount == dec("-0.02")
    eng.place_order(KEY, "BTCUSDT", "SELL", "MARKET", dec("0.01"), None, "GTC", "LONG")
    assert book[("BTCUSDT", "LONG")].amount == 0
    assert eng.equity_check(KEY) == 0
