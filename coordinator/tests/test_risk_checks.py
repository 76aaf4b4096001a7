"""Every check of ``RiskManager.validate`` in isolation, with hand-computed numbers.

The clean order: buy 10 TESTUSDT at 100 (notional 1,000) on a flat 10,000 USD account at 2x, fresh
snapshot, mark = last.  Each test changes one thing and expects exactly one reason.
"""

from __future__ import annotations

from coordinator.risk import BreakerKind, Reason, RiskManager, RiskResult, Side
from coordinator.tests.risk_support import (
    NOW,
    OTHER,
    SYMBOL,
    THIRD,
    D,
    account,
    manager,
    market,
    proposal,
)

HOUR = 3_600_000


def only(result: RiskResult, reason: Reason) -> None:
    assert not result.approved, result
    assert result.reasons == (reason,), result.violations
    assert result.quantity == 0


def validate(m: RiskManager, **kwargs: object) -> RiskResult:
    now = int(kwargs.pop("now", NOW))  # type: ignore[call-overload]
    return m.validate(
        kwargs.pop("p", proposal()),  # type: ignore[arg-type]
        kwargs.pop("a", account()),  # type: ignore[arg-type]
        kwargs.pop("mk", market(now=now)),  # type: ignore[arg-type]
        now,
    )


def test_the_clean_order_is_approved_as_asked() -> None:
    result = validate(manager())
    assert result.approved and result.quantity == D("10.00") and result.violations == ()


def test_trading_disabled() -> None:
    only(validate(manager(trading_enabled=False)), Reason.TRADING_DISABLED)


def test_halted() -> None:
    m = manager()
    m.halt("test", NOW - 1)
    only(validate(m), Reason.HALTED)


def test_cooldown_after_a_loss_ends_after_900_s() -> None:
    m = manager()
    m.on_close(SYMBOL, D("-10"), NOW - 899_999)
    only(validate(m), Reason.COOLDOWN)
    m2 = manager()
    m2.on_close(SYMBOL, D("-10"), NOW - 900_000)
    assert validate(m2).approved


def test_breaker_consecutive_losses() -> None:
    m = manager()
    for i in range(3):  # three losses of 1, an hour ago: cooldown after loss over, breaker pause (1 h) not
        m.on_close(SYMBOL, D("-1"), NOW - 1_000_000 + i)
    only(validate(m), Reason.BREAKER_CONSECUTIVE_LOSSES)
    assert validate(m, now=NOW - 1_000_000 + 2 + HOUR).approved


def test_breaker_drawdown() -> None:
    m = manager()
    m.on_equity(D("10000"), D("0"), NOW - 10)
    m.on_equity(D("9001"), D("0"), NOW - 5)  # 9.99 % below the peak: not yet
    assert validate(m, a=account("9001")).approved
    m.on_equity(D("9000"), D("0"), NOW - 1)  # 10 % below: trips
    only(validate(m, a=account("9000")), Reason.BREAKER_DRAWDOWN)


def test_breaker_error_burst() -> None:
    m = manager()
    for i in range(4):
        m.on_exchange_error(NOW - 59_000 + i)
    assert validate(m).approved
    m.on_exchange_error(NOW - 1)  # the 5th within 60 s
    only(validate(m, now=NOW + 10_000), Reason.BREAKER_ERROR_BURST)


def test_breaker_quorum_loss() -> None:
    m = manager()
    m.on_quorum(0, NOW - 3)
    m.on_quorum(0, NOW - 2)
    m.on_quorum(1, NOW - 1)  # a beat with quorum ends the run
    m.on_quorum(0, NOW)
    m.on_quorum(0, NOW)
    assert validate(m).approved
    m.on_quorum(0, NOW)
    only(validate(m), Reason.BREAKER_QUORUM_LOSS)
    assert m.state.breakers.states[BreakerKind.QUORUM_LOSS].tripped_until_ms == NOW + HOUR


def test_daily_loss_limit_usd() -> None:
    m = manager()
    m.on_equity(D("10000"), D("0"), NOW)
    m.on_close(SYMBOL, D("-149.99"), NOW + 1)
    assert validate(m, now=NOW + HOUR).approved  # 149.99 < 150; 2 % of 10,000 = 200 not reached
    m.on_close(SYMBOL, D("-0.01"), NOW + HOUR + 1)
    only(validate(m, now=NOW + 2 * HOUR), Reason.DAILY_LOSS_LIMIT_USD)


def test_daily_loss_limit_pct_counts_unrealised_and_fees() -> None:
    m = manager()
    m.on_equity(D("5000"), D("0"), NOW)  # day starts at 5,000: 2 % = 100 (under the 150 USD limit)
    m.on_fill(SYMBOL, D("10"), D("100"), D("0.5"), NOW + 1)  # fee 0.5
    a = account("4900.5", unrealised="-99.5")
    only(validate(m, a=a, now=NOW + 2), Reason.DAILY_LOSS_LIMIT_PCT)  # -99.5 - 0.5 = -100
    # latched: a recovery of the unrealised PnL does not lift it today
    only(validate(m, a=account("5000", unrealised="0"), now=NOW + 3), Reason.DAILY_LOSS_LIMIT_PCT)


def test_max_open_positions() -> None:
    held = ((OTHER, "1", "100"), (THIRD, "-1", "100"))
    only(validate(manager(), a=account(positions=held)), Reason.MAX_OPEN_POSITIONS)
    # adding to a position already open does not open a third one
    held2 = ((OTHER, "1", "100"), (SYMBOL, "1", "100"))
    assert validate(manager(), a=account(positions=held2)).approved


def test_max_exposure_per_symbol() -> None:
    only(validate(manager(), p=proposal("20.01")), Reason.SYMBOL_EXPOSURE)  # 2,001 > 2,000
    assert validate(manager(), p=proposal("20")).approved  # exactly 2,000
    held = ((SYMBOL, "15", "100"),)  # 1,500 + 600 = 2,100
    only(validate(manager(), p=proposal("6"), a=account(positions=held)), Reason.SYMBOL_EXPOSURE)


def test_max_total_exposure_includes_the_new_order() -> None:
    m = manager(max_total_exposure_usd=3000.0)
    held = ((OTHER, "19.5", "100"),)  # 1,950 + 1,100 = 3,050 > 3,000
    only(validate(m, p=proposal("11"), a=account(positions=held)), Reason.TOTAL_EXPOSURE)
    assert validate(m, p=proposal("10.5"), a=account(positions=held)).approved  # 3,000


def test_max_leverage() -> None:
    # equity 600 at 3x allows 1,800 of notional; 19 at 100 = 1,900 (margin is plenty: 10,000 available)
    only(validate(manager(), p=proposal("19"), a=account("600", available="10000")), Reason.LEVERAGE)
    assert validate(manager(), p=proposal("18"), a=account("600", available="10000")).approved


def test_order_rate_is_a_sliding_minute() -> None:
    m = manager()
    for i in range(10):
        assert validate(m, now=NOW + i).approved
    only(validate(m, now=NOW + 59_999), Reason.ORDER_RATE)
    assert validate(m, now=NOW + 60_000).approved  # the first left the window


def test_stale_snapshot() -> None:
    only(validate(manager(), mk=market(age_ms=90_001)), Reason.STALE_SNAPSHOT)
    assert validate(manager(), mk=market(age_ms=90_000)).approved


def test_mark_last_divergence() -> None:
    only(validate(manager(), mk=market(mark="100.51")), Reason.MARK_LAST_DIVERGENCE)  # 51 bps
    assert validate(manager(), mk=market(mark="100.50")).approved  # 50 bps


def test_margin_available() -> None:
    # initial margin 1,000 / 2 = 500 plus fee 1,000 * 0.0005 = 0.5 -> 500.5
    only(validate(manager(), a=account(available="500.49")), Reason.INSUFFICIENT_MARGIN)
    assert validate(manager(), a=account(available="500.5")).approved


def test_below_min_notional_and_quantity_never_rounded_up() -> None:
    only(validate(manager(), p=proposal("0.049")), Reason.BELOW_MIN_NOTIONAL)  # 0.04 * 100 = 4 < 5
    only(validate(manager(), p=proposal("0.009")), Reason.BELOW_MIN_QUANTITY)  # 0.00 on the grid
    result = validate(manager(), p=proposal("10.019"))
    assert result.approved and result.quantity == D("10.01")  # down to the step


def test_sizing_refusals_are_named() -> None:
    only(validate(manager(sizing="kelly"), p=proposal(None, probability="0.3")), Reason.NO_EDGE)
    only(validate(manager(), p=proposal(None, stop="101")), Reason.INVALID_STOP)
    only(validate(manager(sizing="kelly"), p=proposal(None, take_profit="99")), Reason.INVALID_TAKE_PROFIT)
    only(validate(manager(), p=proposal(None), a=account("0", available="100")), Reason.NO_EQUITY)
    full = account(positions=((SYMBOL, "20", "100"),))
    only(validate(manager(), p=proposal(None), a=full), Reason.NO_HEADROOM)


def test_sized_order_fits_the_headroom() -> None:
    # 1 % of 10,000 at 2 per unit = 50 units = 5,000 notional; the per-symbol cap leaves 2,000 - 500
    result = validate(manager(), p=proposal(None), a=account(positions=((SYMBOL, "5", "100"),)))
    assert result.approved and result.quantity == D("15.00")


def test_every_failing_reason_is_reported() -> None:
    m = manager(trading_enabled=False)
    m.halt("test", NOW - 1)
    result = validate(m, p=proposal("25"), a=account(available="100"), mk=market(mark="101", age_ms=100_000))
    assert set(result.reasons) == {
        Reason.TRADING_DISABLED,
        Reason.HALTED,
        Reason.SYMBOL_EXPOSURE,
        Reason.STALE_SNAPSHOT,
        Reason.MARK_LAST_DIVERGENCE,
        Reason.INSUFFICIENT_MARGIN,
    }


def test_closing_is_always_allowed_even_halted() -> None:
    m = manager(trading_enabled=False)
    m.halt("test", NOW - 1)
    for i in range(3):
        m.on_close(SYMBOL, D("-100"), NOW - 10 + i)  # breaker, cooldown and daily limit all tripped
    for _ in range(12):
        m.on_exchange_error(NOW)
    held = account(positions=((SYMBOL, "3", "100"),))
    stale = market(age_ms=10_000_000, mark="150")
    for _ in range(20):  # beyond the order rate too
        result = m.validate(proposal(None, Side.SELL, reduce_only=True), held, stale, NOW)
        assert result.approved and result.quantity == D("3")
    clamped = m.validate(proposal("5", Side.SELL, reduce_only=True), held, stale, NOW)
    assert clamped.approved and clamped.quantity == D("3")
    partial = m.validate(proposal("1.239", Side.SELL, reduce_only=True), held, stale, NOW)
    assert partial.approved and partial.quantity == D("1.23")  # down to the step
    wrong_way = m.validate(proposal("1", Side.BUY, reduce_only=True), held, stale, NOW)
    assert wrong_way.reasons == (Reason.NOTHING_TO_REDUCE,)
    assert not validate(m).approved  # entries still refused
