"""Circuit breakers: cooldown = base * 2^k, k back to 0 after a clean period; each detector."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.risk import BreakerKind, BreakerParams, Breakers, BreakerState, Reason, cooldown_ms
from coordinator.risk.breakers import readable_ms
from coordinator.risk.state import RiskStore
from coordinator.storage.db import init_db
from coordinator.tests.risk_support import NOW, SYMBOL, D, account, manager, market, proposal

BASE = 60_000
CLEAN = 1_000_000
PARAMS = BreakerParams(base_cooldown_ms=BASE, clean_period_ms=CLEAN, error_burst=3, error_window_ms=10_000)


def test_cooldown_doubles_by_hand_then_resets_after_a_clean_period() -> None:
    b = BreakerState(BreakerKind.ERROR_BURST)
    assert b.trip(0, PARAMS) == 60_000  # k=0: base
    assert b.trip(30_000, PARAMS) is None  # still blocking: the same incident, no second trip
    assert b.trip(60_000, PARAMS) == 120_000  # k=1, until 180,000
    assert b.trip(180_000, PARAMS) == 240_000  # k=2, until 420,000
    assert b.trip(420_000 + CLEAN - 1, PARAMS) == 480_000  # 1 ms short of a clean period: k=3
    until = b.tripped_until_ms
    assert b.trip(until + CLEAN, PARAMS) == 60_000  # a clean period after the cooldown: k=0 again
    assert b.total_trips == 5


def test_cooldown_exponent_is_capped() -> None:
    assert cooldown_ms(1, 3) == 8
    assert cooldown_ms(1, 500) == 2**20


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=3 * CLEAN), min_size=1, max_size=30))
def test_cooldowns_grow_as_base_times_2_to_the_k(gaps: list[int]) -> None:
    """Oracle: k counts trips since the last gap of at least CLEAN after a cooldown ended."""
    b = BreakerState(BreakerKind.DRAWDOWN)
    now, k, until = 0, 0, 0
    for gap in gaps:
        now += gap
        got = b.trip(now, PARAMS)
        if now < until:
            assert got is None
            continue
        if now - until >= CLEAN:
            k = 0
        assert got == BASE * 2**k
        assert got is not None and b.blocking(now) and not b.blocking(now + got)
        until = now + got
        k += 1


def test_consecutive_losses_detector() -> None:
    b = Breakers()
    p = BreakerParams(consecutive_losses=3)
    assert b.record_trade(D("-1"), 1, p) is None
    assert b.record_trade(D("-1"), 2, p) is None
    assert b.record_trade(D("0"), 3, p) is None  # break-even ends the streak
    assert b.record_trade(D("-1"), 4, p) is None
    assert b.record_trade(D("-1"), 5, p) is None
    trip = b.record_trade(D("-1"), 6, p)
    assert (
        trip is not None
        and trip.kind is BreakerKind.CONSECUTIVE_LOSSES
        and trip.cooldown_ms == p.base_cooldown_ms
    )


def test_drawdown_detector_rearms_from_the_trip() -> None:
    b = Breakers()
    p = BreakerParams(max_drawdown_pct=D(10), base_cooldown_ms=BASE)
    b.record_equity(D("1000"), 0, p)
    b.record_equity(D("1200"), 1, p)  # new peak
    assert b.record_equity(D("1081"), 2, p) is None  # 9.9 %
    assert b.record_equity(D("1080"), 3, p) is not None  # 10 % of 1,200
    # after the pause a persisting drawdown does not re-trip; a further 10 % fall from 1,080 does
    assert b.record_equity(D("1000"), BASE + 10, p) is None
    assert b.record_equity(D("972"), BASE + 20, p) is not None


def test_error_burst_detector_uses_a_sliding_window() -> None:
    b = Breakers()
    assert b.record_error(0, PARAMS) is None
    assert b.record_error(5_000, PARAMS) is None
    assert b.record_error(10_000, PARAMS) is None  # the one at 0 left the 10 s window
    assert b.record_error(14_999, PARAMS) is not None  # 5,000 / 10,000 / 14,999


def test_tripped_breaker_blocks_entries_until_its_cooldown_ends() -> None:
    m = manager(breaker_base_cooldown_seconds=600.0)
    for i in range(5):
        m.on_exchange_error(NOW + i)
    end = NOW + 4 + 600_000
    blocked = m.validate(proposal(), account(), market(now=end - 1), end - 1)
    assert blocked.reasons == (Reason.BREAKER_ERROR_BURST,)
    assert m.validate(proposal(), account(), market(now=end), end).approved
    # the second trip, soon after: twice the pause
    for i in range(5):
        m.on_exchange_error(end + 1_000 + i)
    assert m.state.breakers.states[BreakerKind.ERROR_BURST].tripped_until_ms == end + 1_004 + 1_200_000
    # closing orders are never blocked
    held = account(positions=((SYMBOL, "1", "100"),))
    close = proposal(None, side=proposal().side.SELL, reduce_only=True)
    assert m.validate(close, held, market(now=end + 2_000), end + 2_000).approved


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (250, "250ms"),
        (45_000, "45s"),
        (900_000, "15m"),
        (3_600_000, "1h"),
        (9_000_000, "2h 30m"),
        (14_745_600_000, "170d 16h"),  # base 15 min at the exponent's cap
    ],
)
def test_a_pause_reads_in_its_two_largest_units(ms: int, text: str) -> None:
    assert readable_ms(ms) == text


def test_a_trip_is_logged_and_recorded_with_its_pause_readable(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    store = RiskStore(init_db(tmp_path / "xylen.db"))
    m = manager(store, breaker_base_cooldown_seconds=900.0)
    with caplog.at_level(logging.WARNING, logger="coordinator.risk.manager"):
        for i in range(5):
            m.on_exchange_error(NOW + i)
    assert "risk: breaker error_burst tripped (" in caplog.text
    assert caplog.text.rstrip().endswith("pause 900000 ms (15m)")
    kinds = {kind: detail for _at, kind, detail, _actor in store.events()}
    assert kinds["breaker:error_burst"].endswith("; pause 900000 ms (15m)")
