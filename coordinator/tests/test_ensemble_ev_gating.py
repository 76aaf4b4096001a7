"""Hand-computed EV, Kelly, funding and fee figures, and every HOLD reason produced in isolation.

Set-up for the gating tests: market entries (taker 5 bps x 2 + slippage 1 bp x 2 = 12 bps round
trip), ``uncalibrated_shrink = 1`` (calibrated = raw until a calibrator exists), two models of equal
prior (weights 0.5 / 0.5), price 100, no funding.
"""

from __future__ import annotations

import math

import pytest

from coordinator.ensemble import (
    Action,
    Costs,
    Ensemble,
    HoldReason,
    Market,
    Vote,
    expected_value_bps,
    funding_bps,
    kelly_fraction,
    tp_probability,
)
from xylen.config.schema import EnsembleConfig, TradingConfig

T0 = 1_700_000_000_000
HOUR = 3_600_000


def test_costs_per_entry_style() -> None:
    market = Costs.from_trading(
        TradingConfig(entry="market", taker_fee_bps=5, maker_fee_bps=2, slippage_bps=1)
    )
    assert (market.fees_bps, market.slippage_bps, market.total_bps) == (10.0, 2.0, 12.0)
    maker = Costs.from_trading(
        TradingConfig(entry="maker_preferred", taker_fee_bps=5, maker_fee_bps=2, slippage_bps=1)
    )
    assert (maker.fees_bps, maker.slippage_bps, maker.total_bps) == (7.0, 1.0, 8.0)


def test_ev_symmetric_bracket_by_hand() -> None:
    # 0.6 * 80 - 0.4 * 80 - 12 = 48 - 32 - 12 = 4
    assert expected_value_bps(0.6, 80, 80, 12) == pytest.approx(4.0)
    # with 0.125 bp of funding: 3.875
    assert expected_value_bps(0.6, 80, 80, 12, 0.125) == pytest.approx(3.875)
    assert kelly_fraction(0.6, 80, 80) == pytest.approx(0.2)  # 0.6 - 0.4 / 1
    assert kelly_fraction(0.4, 80, 80) == 0.0  # negative, floored


def test_ev_asymmetric_bracket_by_hand() -> None:
    # textbook: 0.6 * 100 - 0.4 * 50 - 12 = 28; Kelly 0.6 - 0.4 / 2 = 0.4
    assert expected_value_bps(0.6, 100, 50, 12, bracket_odds=False) == pytest.approx(28.0)
    assert kelly_fraction(0.6, 100, 50, bracket_odds=False) == pytest.approx(0.4)
    # odds-adjusted: odds 1.5 * 50/100 = 0.75 -> q = 3/7; EV = 300/7 - 200/7 - 12 = 100/7 - 12
    assert tp_probability(0.6, 100, 50) == pytest.approx(3 / 7)
    assert expected_value_bps(0.6, 100, 50, 12) == pytest.approx(100 / 7 - 12)
    assert kelly_fraction(0.6, 100, 50) == pytest.approx(3 / 7 - (4 / 7) / 2)  # = 1/7
    # an uninformed p = 0.5 is worth exactly 0 gross whatever the bracket
    assert expected_value_bps(0.5, 100, 50, 0) == pytest.approx(0.0, abs=1e-12)
    assert expected_value_bps(0.5, 100, 50, 0, bracket_odds=False) == pytest.approx(25.0)


def test_funding_by_hand() -> None:
    # 1 bp per 8 h, prorated over 1 h: 0.125 bp; longs pay, shorts receive
    assert funding_bps(0.0001, True, HOUR) == pytest.approx(0.125)
    assert funding_bps(0.0001, False, HOUR) == pytest.approx(-0.125)
    # the next funding time falls inside the hour: one full payment
    assert funding_bps(0.0001, True, HOUR, now_ms=T0, next_funding_ms=T0 + HOUR // 2) == pytest.approx(1.0)
    assert funding_bps(0.0001, True, HOUR, now_ms=T0, next_funding_ms=T0 + 2 * HOUR) == 0.0


def make(quorum: int = 2, **kwargs: float) -> Ensemble:
    config = EnsembleConfig(
        quorum=quorum,
        min_edge=0.02,
        max_disagreement=0.15,
        uncalibrated_shrink=1.0,
        pooling="log_odds",
        **kwargs,
    )
    trading = TradingConfig(
        entry="market", taker_fee_bps=5, maker_fee_bps=2, slippage_bps=1, horizon_minutes=60
    )
    return Ensemble(config, trading, {"a": 1.0, "b": 1.0})


def votes(pa: float, pb: float | None, sl: float | None = 99.2, tp: float | None = 100.8) -> list[Vote]:
    out = [Vote("a", pa, Action.LONG, sl, tp, 1.0)]
    if pb is not None:
        out.append(Vote("b", pb, Action.LONG, sl, tp, 1.0))
    return out


MARKET = Market(T0, 100.0)


def test_trade_by_hand() -> None:
    d = make().decide(votes(0.6, 0.6), MARKET)  # bracket 80 / 80 bps
    assert d.action is Action.LONG and d.reasons == ()
    assert d.probability == pytest.approx(0.6)
    assert d.expected_value_bps == pytest.approx(4.0)  # 48 - 32 - 12
    assert d.size_fraction == pytest.approx(0.2)
    assert (d.stop_loss, d.take_profit) == (pytest.approx(99.2), pytest.approx(100.8))
    assert [v.weight for v in d.votes] == [0.5, 0.5]


def test_short_with_funding_received_by_hand() -> None:
    # short at 1 - 0.4 = 0.6: 48 - 32 - 12 = 4, plus 8 bp / 8 h prorated over 1 h received: 5
    d = make().decide(votes(0.4, 0.4, sl=100.8, tp=99.2), Market(T0, 100.0, funding_rate=0.0008))
    assert d.action is Action.SHORT and d.reasons == ()
    assert d.expected_value_bps == pytest.approx(5.0)
    assert (d.stop_loss, d.take_profit) == (pytest.approx(100.8), pytest.approx(99.2))


def test_atr_bracket_when_votes_carry_none() -> None:
    # ATR 0.5 on 100 = 50 bps; stop 1.5 x = 75, take-profit 2 x = 100; q = 0.6 odds x 75/100
    d = make().decide(votes(0.6, 0.6, sl=None, tp=None), Market(T0, 100.0, atr=0.5))
    q = 1.5 * 0.75 / (1 + 1.5 * 0.75)
    assert d.expected_value_bps == pytest.approx(q * 100 - (1 - q) * 75 - 12)
    assert d.take_profit == pytest.approx(101.0) and d.stop_loss == pytest.approx(99.25)


def test_hold_no_quorum_only() -> None:
    d = make(quorum=2).decide(votes(0.6, None), MARKET)  # one vote: p = 0.6, EV = 4 > 0
    assert d.action is Action.HOLD and d.reasons == (HoldReason.NO_QUORUM,)
    assert d.expected_value_bps == pytest.approx(4.0) and d.size_fraction == 0.0


def test_hold_disagreement_only() -> None:
    # logits ln(.45/.55) = -0.20067, ln(.85/.15) = 1.73460 -> mean 0.76696 -> p = 0.68287
    # weighted std of (0.45, 0.85) with 0.5/0.5 = 0.2 > 0.15; EV = 80 (2p - 1) - 12 = 17.26 > 0
    d = make().decide(votes(0.45, 0.85), MARKET)
    z = (math.log(0.45 / 0.55) + math.log(0.85 / 0.15)) / 2
    p = 1 / (1 + math.exp(-z))
    assert d.probability == pytest.approx(p) and p == pytest.approx(0.68287, abs=1e-5)
    assert d.disagreement == pytest.approx(0.2)
    assert d.expected_value_bps == pytest.approx(80 * (2 * p - 1) - 12)
    assert d.reasons == (HoldReason.HIGH_DISAGREEMENT,)


def test_hold_low_edge_only() -> None:
    # p = 0.515: edge 0.015 < 0.02; with a 1000 bps bracket EV = 0.03 * 1000 - 12 = 18 > 0
    d = make().decide(votes(0.515, 0.515, sl=90.0, tp=110.0), MARKET)
    assert d.expected_value_bps == pytest.approx(18.0)
    assert d.reasons == (HoldReason.LOW_EDGE,)


def test_hold_no_bracket_only() -> None:
    d = make().decide(votes(0.6, 0.6, sl=None, tp=None), MARKET)  # no vote bracket, no ATR
    assert d.reasons == (HoldReason.NO_BRACKET,)
    assert math.isnan(d.expected_value_bps) and d.stop_loss is None


def test_hold_non_positive_ev_only() -> None:
    # 50 bps bracket: 0.6 * 50 - 0.4 * 50 - 12 = -2
    d = make().decide(votes(0.6, 0.6, sl=99.5, tp=100.5), MARKET)
    assert d.expected_value_bps == pytest.approx(-2.0)
    assert d.reasons == (HoldReason.NON_POSITIVE_EV,)


def test_all_reasons_reported_together() -> None:
    d = make(quorum=3).decide(votes(0.45, 0.56, sl=99.9, tp=100.1), MARKET)
    # p = sigmoid((ln(.45/.55) + ln(.56/.44)) / 2) = 0.5052: edge < 0.02, std 0.055 < 0.15
    assert d.reasons == (HoldReason.NO_QUORUM, HoldReason.LOW_EDGE, HoldReason.NON_POSITIVE_EV)


def test_missing_and_invalid_votes_are_renormalised_out() -> None:
    ens = make(quorum=1)
    d = ens.decide([Vote("a", 0.6, Action.LONG, 99.2, 100.8), Vote("b", math.nan)], MARKET)
    assert [v.model_id for v in d.votes] == ["a"] and d.votes[0].weight == 1.0
    assert d.action is Action.LONG and d.expected_value_bps == pytest.approx(4.0)
