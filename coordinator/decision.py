"""From the ensemble's :class:`~coordinator.ensemble.Decision` to the risk manager's proposal.

The ensemble's ``probability`` is P(price up over the horizon); Kelly sizing in the risk manager
needs the probability of reaching the take-profit before the stop.  With the bracket-odds rule of
:func:`coordinator.ensemble.ev.tp_probability` the direction's odds are scaled by stop / take-profit
distance, so an uninformed 0.5 never looks like an edge on an asymmetric bracket.  Prices enter
the risk manager as ``Decimal`` (through ``str``, never binary floats).
"""

from __future__ import annotations

from decimal import Decimal

from coordinator.ensemble import Action, Decision
from coordinator.ensemble.ev import tp_probability
from coordinator.risk import Side, TradeProposal


def proposal_from_decision(decision: Decision, symbol: str, price: float) -> TradeProposal | None:
    """The entry the decision asks for, unsized, or None for a HOLD or a decision without bracket."""
    if decision.action is Action.HOLD or decision.stop_loss is None or decision.take_profit is None:
        return None
    side = Side.BUY if decision.action is Action.LONG else Side.SELL
    p_dir = decision.probability if side is Side.BUY else 1.0 - decision.probability
    tp_bps = abs(decision.take_profit - price) / price * 1e4
    sl_bps = abs(price - decision.stop_loss) / price * 1e4
    p_tp = tp_probability(p_dir, tp_bps, sl_bps) if tp_bps > 0 and sl_bps > 0 else p_dir
    return TradeProposal(
        symbol=symbol,
        side=side,
        reference_price=Decimal(str(price)),
        stop_price=Decimal(str(decision.stop_loss)),
        take_profit_price=Decimal(str(decision.take_profit)),
        probability=Decimal(str(round(p_tp, 6))),
    )
