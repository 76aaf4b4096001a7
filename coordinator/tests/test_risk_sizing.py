"""Sizing: hand-computed Kelly, fixed-fraction and fixed-amount sizes; caps and grid as properties."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.risk import SizeRefusal, SizingParams, kelly_fraction, size_position
from coordinator.tests.risk_support import D, config, rules

BIG = D("1e12")


def params(**changes: object) -> SizingParams:
    return SizingParams.from_config(config(**changes))


def size(p: SizingParams, *, long: bool = True, entry: str = "100", stop: str = "98", tp: str = "104",
         prob: str = "0.6", equity: str = "10000", max_notional: Decimal = BIG, step: str = "0.01",
         min_notional: str = "5") -> tuple[Decimal, SizeRefusal | None]:  # fmt: skip
    result = size_position(
        p, long=long, equity=D(equity), entry=D(entry), stop=D(stop), take_profit=D(tp),
        probability=D(prob), rules=rules(step=step, min_notional=min_notional), max_notional=max_notional,
    )  # fmt: skip
    return result.quantity, result.refusal


def test_kelly_formula_by_hand() -> None:
    # f* = p - (1 - p) / b
    assert kelly_fraction(D("0.6"), D("2")) == D("0.4")  # 0.6 - 0.4/2
    assert kelly_fraction(D("0.55"), D("1.5")) == D("0.25")  # 0.55 - 0.45/1.5 = 0.55 - 0.30
    assert kelly_fraction(D("0.5"), D("1")) == 0  # no edge
    assert kelly_fraction(D("0.3"), D("2")) == 0  # 0.3 - 0.35 < 0: floored at 0


def test_kelly_size_long_and_short_by_hand() -> None:
    p = params(sizing="kelly", kelly_fraction=0.25, max_position_fraction=0.2)
    # b = (104-100)/(100-98) = 2, f* = 0.4, quarter Kelly 0.1 of 10,000 = 1,000 at risk, 2 per unit -> 500
    assert size(p) == (D("500.00"), None)
    assert size(p, long=False, stop="102", tp="96") == (D("500.00"), None)
    # b = 1.5/1 = 1.5, f* = 0.25, quarter 0.0625 -> 625 at risk over 1 per unit -> 625 units
    assert size(p, stop="99", tp="101.5", prob="0.55") == (D("625.00"), None)


def test_kelly_capped_at_max_position_fraction_and_by_notional() -> None:
    p = params(sizing="kelly", kelly_fraction=1.0, max_position_fraction=0.1)
    # full Kelly 0.4 capped to 0.1: 1,000 at risk / 2 = 500
    assert size(p) == (D("500.00"), None)
    # notional cap 30,000 (3x of 10,000) at price 100: at most 300 units
    assert size(p, max_notional=D("30000")) == (D("300.00"), None)


def test_kelly_without_edge_or_with_a_bad_bracket_is_no_trade() -> None:
    p = params(sizing="kelly")
    assert size(p, prob="0.3") == (D(0), SizeRefusal.NO_EDGE)
    assert size(p, tp="99") == (D(0), SizeRefusal.INVALID_TAKE_PROFIT)
    assert size(p, stop="101") == (D(0), SizeRefusal.INVALID_STOP)
    assert size(p, long=False) == (D(0), SizeRefusal.INVALID_STOP)  # stop 98 under a short's entry
    assert size(p, equity="0") == (D(0), SizeRefusal.NO_EQUITY)
    assert size(p, max_notional=D(0)) == (D(0), SizeRefusal.NO_HEADROOM)


def test_fixed_fraction_is_the_loss_at_the_stop() -> None:
    p = params(sizing="fixed_fraction", fixed_fraction=0.01)
    # 1 % of 10,000 = 100 lost at the stop, 2 per unit -> 50 units (notional 5,000)
    assert size(p) == (D("50.00"), None)
    # 100 / 3 = 33.333... rounded DOWN to the 0.01 step
    assert size(p, stop="97") == (D("33.33"), None)


def test_fixed_amount_is_a_notional() -> None:
    p = params(sizing="fixed_amount", fixed_amount_usd=100.0)
    assert size(p) == (D("1.00"), None)  # 100 USD at 100
    # 100 / 30,000 = 0.00333... -> 0.003 on a 0.001 grid
    assert size(p, entry="30000", stop="29000", tp="31000", step="0.001") == (D("0.003"), None)
    # the risk at the stop is capped too: 10 % of 1,000 equity = 100 at risk over 60 per unit -> 1.66
    big = params(sizing="fixed_amount", fixed_amount_usd=10_000.0)
    assert size(big, equity="1000", stop="40") == (D("1.66"), None)


def test_below_min_notional_is_no_trade_never_rounded_up() -> None:
    p = params(sizing="fixed_amount", fixed_amount_usd=4.99)
    assert size(p) == (D(0), SizeRefusal.BELOW_MIN_NOTIONAL)  # 0.04 * 100 = 4 < 5
    tiny = params(sizing="fixed_amount", fixed_amount_usd=0.5)
    assert size(tiny) == (D(0), SizeRefusal.BELOW_MIN_QUANTITY)  # 0.005 -> 0.00 on the grid


prices = st.decimals(min_value="0.5", max_value="70000", places=2)
fractions = st.decimals(min_value="0.001", max_value="0.99", places=3)


@settings(max_examples=300, deadline=None)
@given(
    method=st.sampled_from(["fixed_fraction", "kelly", "fixed_amount"]),
    entry=prices,
    stop_fraction=fractions,
    tp_fraction=st.decimals(min_value="0.001", max_value="5", places=3),
    probability=st.decimals(min_value="0", max_value="1", places=3),
    equity=st.decimals(min_value="0", max_value="1000000", places=2),
    max_notional=st.decimals(min_value="-100", max_value="1000000", places=2),
    step=st.sampled_from(["1", "0.1", "0.01", "0.001"]),
    long=st.booleans(),
    cap=st.sampled_from([0.01, 0.1, 0.5, 1.0]),
)
def test_sizes_are_never_negative_never_above_caps_always_on_the_grid(
    method: str, entry: Decimal, stop_fraction: Decimal, tp_fraction: Decimal, probability: Decimal,
    equity: Decimal, max_notional: Decimal, step: str, long: bool, cap: float,
) -> None:  # fmt: skip
    distance = entry * stop_fraction
    reward = entry * tp_fraction
    stop, tp = (entry - distance, entry + reward) if long else (entry + distance, entry - reward)
    p = params(sizing=method, max_position_fraction=cap, kelly_fraction=0.5)
    result = size_position(
        p, long=long, equity=equity, entry=entry, stop=stop, take_profit=tp, probability=probability,
        rules=rules(step=step), max_notional=max_notional,
    )  # fmt: skip
    q = result.quantity
    assert q >= 0
    assert q % D(step) == 0
    if q:
        assert result.refusal is None
        assert q * entry <= max_notional
        assert q * distance <= D(str(cap)) * equity  # loss at the stop within max_position_fraction
        assert q * entry >= 5  # at or above the exchange minimum notional
        if method == "kelly":
            full = kelly_fraction(probability, reward / distance)
            assert q * distance <= full * D("0.5") * equity
    else:
        assert result.refusal is not None
