"""Bracket rules: what an intent needs on the exchange, decided purely from what SQLite knows.

:func:`plan` is pure and synchronous: it takes an intent, its orders and (optionally) the signed
position the exchange reports for the symbol, and returns the :class:`Action` list the manager
executes.  The rules, in order:

1. An intent that is no longer ``OPEN``: cancel whatever of it is still live.
2. An exit has fired (the stop or take-profit triggered or executed, or a close order executed):
   cancel every live order of the intent that has not fired (the other leg, the rest of a
   partially filled entry); once nothing is live, close the intent (``CLOSED``).
3. The entry has executed nothing: wait while it is live; once it is final, close the intent
   (``CANCELED``: no exposure was ever taken).
4. The entry has executed something (partially or fully) and the position is known to be flat
   while the entry is final: the position was closed outside our legs (by hand, liquidation):
   cancel the live legs and close the intent (``CLOSED``).
5. Otherwise the position needs protection: a ``STOP_MARKET`` and a ``TAKE_PROFIT_MARKET``, both
   ``closePosition`` (they cover the whole position, so a partial fill is protected as soon as
   it happens and stays protected while the rest fills).  A leg whose latest order is missing or
   ended without firing (canceled, expired, rejected, lost) gets a new attempt.

One open intent per symbol is assumed (``closePosition`` legs act on the symbol's net position);
the manager refuses a second one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum

from coordinator.exchange.errors import RejectedError
from coordinator.orders.models import Intent, IntentStatus, Order, OrderKind
from coordinator.side import Side

logger = logging.getLogger(__name__)

EXIT_KINDS = (OrderKind.STOP_LOSS, OrderKind.TAKE_PROFIT, OrderKind.CLOSE)


class ActionKind(str, Enum):
    PLACE_STOP = "place_stop"
    PLACE_TAKE_PROFIT = "place_take_profit"
    CANCEL = "cancel"
    CLOSE_INTENT = "close_intent"


@dataclass(frozen=True, slots=True)
class Action:
    """One step for the manager: place a leg, cancel an order, or close the intent."""

    kind: ActionKind
    intent_id: str
    client_order_id: str | None = None  # CANCEL: the order to cancel
    status: IntentStatus | None = None  # CLOSE_INTENT: the final status
    reason: str = ""


def exit_side(side: Side) -> Side:
    """The side that closes a position opened by ``side``."""
    return side.opposite


def latest_legs(orders: Iterable[Order]) -> dict[OrderKind, Order]:
    """The latest attempt of each leg."""
    latest: dict[OrderKind, Order] = {}
    for order in orders:
        known = latest.get(order.kind)
        if known is None or order.attempt > known.attempt:
            latest[order.kind] = order
    return latest


def fired(order: Order | None) -> bool:
    """Whether an exit order has fired: executed anything, or triggered and still working.

    A leg that triggered but ended without executing (its market order expired, or we cancelled
    it because it hung) did not exit: the position still needs a stop.
    """
    if order is None:
        return False
    return order.executed_qty > 0 or (order.triggered_ms is not None and not order.is_final)


def exited(orders: Iterable[Order]) -> bool:
    """Whether any attempt of any exit leg (stop, take-profit, close) has fired."""
    return any(order.kind in EXIT_KINDS and fired(order) for order in orders)


def holds(side: Side, position_qty: Decimal) -> bool:
    """Whether a signed position amount is exposure in the direction of ``side``."""
    return position_qty > 0 if side is Side.BUY else position_qty < 0


def _cancel(order: Order, reason: str) -> Action:
    return Action(ActionKind.CANCEL, order.intent_id, client_order_id=order.client_order_id, reason=reason)


def plan(intent: Intent, orders: Iterable[Order], position_qty: Decimal | None = None) -> list[Action]:
    """The actions ``intent`` needs (rules in the module docstring); ``[]`` when all is in place."""
    own = [order for order in orders if order.intent_id == intent.intent_id]
    live = [order for order in own if not order.is_final]
    if intent.status is not IntentStatus.OPEN:
        return [_cancel(order, f"intent {intent.status.value}") for order in live]
    legs = latest_legs(own)
    entry = legs.get(OrderKind.ENTRY)  # None: an adopted position, protected by its legs only
    if entry is None and not own:
        return []
    if exited(own):
        cancels = [
            _cancel(order, "an exit fired")
            for order in live
            if order.kind is OrderKind.ENTRY or not fired(order)
        ]
        if cancels or live:
            return cancels
        return [
            Action(ActionKind.CLOSE_INTENT, intent.intent_id, status=IntentStatus.CLOSED, reason="exited")
        ]
    if entry is not None and entry.executed_qty == 0:
        if not entry.is_final:
            return []
        cancels = [_cancel(order, "entry ended unfilled") for order in live]
        return [
            *cancels,
            Action(
                ActionKind.CLOSE_INTENT,
                intent.intent_id,
                status=IntentStatus.CANCELED,
                reason=f"entry {entry.state.value} without a fill",
            ),
        ]
    entry_final = entry is None or entry.is_final
    if position_qty is not None and entry_final and not holds(intent.side, position_qty):
        cancels = [_cancel(order, "position is flat") for order in live]
        return [
            *cancels,
            Action(
                ActionKind.CLOSE_INTENT, intent.intent_id, status=IntentStatus.CLOSED, reason="position flat"
            ),
        ]
    actions: list[Action] = []
    stop, take_profit = legs.get(OrderKind.STOP_LOSS), legs.get(OrderKind.TAKE_PROFIT)
    if intent.stop_price is not None and (stop is None or stop.is_final):
        actions.append(Action(ActionKind.PLACE_STOP, intent.intent_id, reason="position needs a stop"))
    if intent.take_profit_price is not None and (take_profit is None or take_profit.is_final):
        actions.append(
            Action(ActionKind.PLACE_TAKE_PROFIT, intent.intent_id, reason="position needs a take-profit")
        )
    return actions


def is_protected(intent: Intent, orders: Iterable[Order]) -> bool:
    """Whether SQLite shows a live, unfired stop for the intent (or the intent needs none)."""
    if intent.stop_price is None:
        return True
    stop = latest_legs(orders).get(OrderKind.STOP_LOSS)
    return stop is not None and not stop.is_final and not fired(stop)


def check_prices(side: Side, stop: Decimal | None, target: Decimal | None, reference: Decimal | None) -> None:
    """Refuse (locally, -1102) a stop and take-profit on the wrong sides of each other or the price."""

    def bad(msg: str) -> RejectedError:
        return RejectedError(msg, code=-1102, local=True, endpoint="brackets")

    sign = 1 if side is Side.BUY else -1
    if stop is not None and target is not None and sign * (target - stop) <= 0:
        raise bad(f"take-profit {target} must be on the far side of the stop {stop} for a {side.value}")
    if reference is not None and stop is not None and sign * (reference - stop) <= 0:
        raise bad(f"stop {stop} would trigger at once against {reference}")
    if reference is not None and target is not None and sign * (target - reference) <= 0:
        raise bad(f"take-profit {target} would trigger at once against {reference}")
