"""The ensemble's Decision becomes the risk manager's proposal (hand-computed cases)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from coordinator.decision import proposal_from_decision
from coordinator.ensemble import Action, Decision, HoldReason
from coordinator.risk import Side


def _decision(action: Action, p: float, stop: float | None, tp: float | None) -> Decision:
    reasons = (HoldReason.LOW_EDGE,) if action is Action.HOLD else ()
    return Decision(1, action, p, max(p, 1 - p), 5.0, 0.1, stop, tp, (), reasons, 0.0)


def test_hold_and_missing_bracket_give_no_proposal() -> None:
    assert proposal_from_decision(_decision(Action.HOLD, 0.5, 99.0, 101.0), "BTCUSDT", 100.0) is None
    assert proposal_from_decision(_decision(Action.LONG, 0.6, None, 101.0), "BTCUSDT", 100.0) is None


def test_long_on_an_asymmetric_bracket() -> None:
    # p = 0.6, stop 1% below, take-profit 2% above: odds 0.6/0.4 * 100/200 = 0.75 -> p_tp = 0.75/1.75
    proposal = proposal_from_decision(_decision(Action.LONG, 0.6, 99.0, 102.0), "BTCUSDT", 100.0)
    assert proposal is not None
    assert proposal.side is Side.BUY
    assert proposal.reference_price == Decimal("100.0")
    assert proposal.stop_price == Decimal("99.0") and proposal.take_profit_price == Decimal("102.0")
    assert float(proposal.probability) == pytest.approx(0.75 / 1.75, abs=1e-6)


def test_short_uses_the_down_probability() -> None:
    # P(up) = 0.3 -> P(down) = 0.7 on a symmetric bracket: p_tp = 0.7
    proposal = proposal_from_decision(_decision(Action.SHORT, 0.3, 101.0, 99.0), "ETHUSDT", 100.0)
    assert proposal is not None
    assert proposal.side is Side.SELL
    assert proposal.probability == Decimal("0.7")
