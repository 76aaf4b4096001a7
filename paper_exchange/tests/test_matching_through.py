"""The trade-through rule for resting limits on real candle paths: a limit the path only touches
does not fill; one the path passes fills at the first whole ms strictly beyond it."""

from __future__ import annotations

from paper_exchange.engine.matching import beyond, cross_time, through_time
from paper_exchange.feed import Leg
from paper_exchange.tests import T0, candles, make_feed

STEP = 300_000
THIRD = STEP // 3


def _legs(n: int = 288) -> list[tuple[Leg, float, float]]:
    """``(leg, low, high)`` of each third of a day of BTCUSDT candles: the path's linear pieces."""
    feed = make_feed(("BTCUSDT",), T0, 2)
    frame = candles("BTCUSDT", T0, 2)
    out = []
    for k in range(n):
        start = T0 + k * STEP
        row = frame.iloc[k]
        for a, b in (
            (start, start + THIRD),
            (start + THIRD, start + 2 * THIRD),
            (start + 2 * THIRD, start + STEP),
        ):
            leg = feed.leg("BTCUSDT", a, b)
            assert leg is not None
            out.append((leg, float(row.low), float(row.high)))
    return out


def test_a_limit_at_the_low_is_touched_but_not_traded_through() -> None:
    touched = 0
    for leg, low, high in _legs():
        for level, below in ((low, True), (high, False)):
            if leg.p1 != level:
                continue  # this leg does not end at the candle's extreme
            touched += 1
            assert cross_time(leg, leg.t0, level, below) is not None  # a stop would trigger
            assert through_time(leg, leg.t0, level, below) is None  # a resting limit does not fill
    assert touched > 200  # most candles reach their low and their high at a leg's end


def test_a_limit_inside_the_leg_fills_at_the_first_ms_beyond_it() -> None:
    checked = 0
    for leg, _low, _high in _legs():
        if abs(leg.p1 - leg.p0) < 1.0:
            continue
        below = leg.p1 < leg.p0
        for frac in (0.0, 0.25, 0.5, 0.999):
            level = leg.p0 + (leg.p1 - leg.p0) * frac
            when = through_time(leg, leg.t0, level, below)
            assert when is not None
            assert beyond(leg.price_at(when), level, below)
            if when > leg.t0:
                assert not beyond(leg.price_at(when - 1), level, below)
            touch = cross_time(leg, leg.t0, level, below)
            assert touch is not None and touch <= when
            checked += 1
        # a level past the leg's end is never traded through
        past = leg.p1 + (leg.p1 - leg.p0)
        assert through_time(leg, leg.t0, past, below) is None
    assert checked > 1000


def test_a_path_already_beyond_the_limit_fills_at_once() -> None:
    leg = Leg(T0, T0 + THIRD, 100.0, 90.0, 1.0)
    assert through_time(leg, T0, 101.0, True) == T0
    assert through_time(leg, T0 + 10, 101.0, True) == T0 + 10
    assert through_time(leg, T0, 90.0, True) is None  # ends exactly at the limit
    assert through_time(leg, T0, 89.9, True) is None
    assert through_time(leg, T0, 95.0, True) == T0 + THIRD // 2 + 1
