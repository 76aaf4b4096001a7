"""``OrderManager``: sends, queries and cancels orders; persist first, act after.

The life of a placement (DESIGN §5, the store's contract):

1. the intent and a ``PENDING`` order (deterministic client id) are written; quantities and
   prices were rounded and checked by :class:`~coordinator.exchange.filters.SymbolRules` first --
   a local refusal is recorded as ``REJECT_LOCAL`` and nothing is sent;
2. ``SEND`` is recorded, and only then the request leaves with that client id;
3. the reply is recorded: success -> the reply's ``OrderUpdate``; a 4xx -> ``REJECTED`` with the
   code and message; "not executed" (a 5xx that failed, a 429 after retries) -> ``REJECTED``; a
   timeout / 503 "Unknown error" -> ``UNKNOWN_OUTCOME``, then a query by client id decides;
4. a query that finds the order records it; -2013 records ``QUERY_NOT_FOUND``, and after
   ``tracker.lost_after`` of them (spaced by the poll interval) ``LOST``.

Every change goes through :meth:`OrderManager.record` (synchronous, on the event-loop thread): an
:class:`IllegalTransition` is logged and the order re-queried, never ignored; a ``reopened``
transition (fill after cancel, a lost order found) triggers a position check.  Follow-up work
(bracket legs, cancelling the other leg) is queued by intent id and done by
:meth:`OrderManager.ensure_bracket` (rules in :mod:`coordinator.orders.brackets`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from coordinator.exchange.client import BinanceFuturesClient
from coordinator.exchange.errors import (
    FatalError,
    NotFoundError,
    RejectedError,
    RetryableError,
    UnknownOutcomeError,
)
from coordinator.orders import brackets
from coordinator.orders.brackets import Action, ActionKind
from coordinator.orders.events import Event, LocalEvent, OrderUpdate, VenueStatus
from coordinator.orders.machine import IllegalTransition, Transition
from coordinator.orders.models import Intent, IntentStatus, Order, OrderKind, OrderType, Side
from coordinator.orders.states import EventKind, OrderState
from coordinator.orders.store import LiveOrderExists, OrderStore, UnknownOrder, wall_ms
from coordinator.orders.tracker import OrderTracker
from coordinator.orders.venue_events import (
    fill_from_trade,
    update_from_algo,
    update_from_order,
)

logger = logging.getLogger(__name__)

CODE_WOULD_TRIGGER = -2021


class SymbolBusy(Exception):
    """The symbol already has an open intent (one bracket per symbol: closePosition legs net)."""


@dataclass(frozen=True, slots=True)
class Placement:
    """The result of :meth:`OrderManager.open_position`: the intent, its entry, a refusal reason."""

    intent: Intent
    entry: Order
    reason: str = ""

    @property
    def rejected(self) -> bool:
        return self.entry.state is OrderState.REJECTED


def _reason(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    msg = getattr(exc, "msg", str(exc))
    return f"{code}: {msg}" if code is not None else str(msg)


class OrderManager:
    """Placing, querying and cancelling orders over one client and one store (module docstring)."""

    def __init__(
        self,
        client: BinanceFuturesClient,
        store: OrderStore,
        *,
        tracker: OrderTracker | None = None,
        now_ms: Callable[[], int] = wall_ms,
        send_timeout_s: float | None = None,
        leg_retry_s: float = 1.0,
    ) -> None:
        self.client = client
        self.store = store
        self.tracker = tracker or OrderTracker()
        self.now_ms = now_ms
        self.send_timeout_s = send_timeout_s
        self.illegal = 0  # events refused by the transition table (each one re-queried)
        self.reopened = 0  # final orders that came back to life
        self.dirty: set[str] = set()  # intents whose bracket must be checked
        self.requery: set[str] = set()  # orders to look up on the exchange
        self.position_checks: set[str] = set()  # symbols to compare with the exchange's position
        self.wakeup = asyncio.Event()
        self.leg_retry_s = leg_retry_s
        self.inflight: set[str] = set()  # orders whose placement request is on its way
        self._locks: dict[str, asyncio.Lock] = {}
        self._leg_failures: dict[tuple[str, ActionKind], float] = {}  # last refusal, monotonic s
        self.tracker.load(store.live_orders(), now_ms())

    # -- bookkeeping (synchronous) --------------------------------------------------------------
    def record(self, event: Event, raw: object = None) -> Transition | None:
        """Persist ``event``; on success track the order and queue follow-ups.  ``None`` if refused."""
        try:
            transition = self.store.record(event, raw)
        except UnknownOrder:
            logger.warning("event for an order we do not know: %s", event.client_order_id)
            return None
        except IllegalTransition as exc:
            self.illegal += 1
            logger.warning("refused event (%s); re-querying %s", exc, event.client_order_id)
            self._request_query(event.client_order_id)
            return None
        order = transition.order
        self.tracker.update(order, self.now_ms())
        if transition.reopened:
            self.reopened += 1
            self.position_checks.add(order.symbol)
            logger.error(
                "%s reopened (%s -> %s): checking the %s position for a double exposure",
                order.client_order_id, transition.before.value, transition.after.value, order.symbol,
            )  # fmt: skip
        if transition.changed:
            self._mark(order.intent_id)
        return transition

    def _mark(self, intent_id: str) -> None:
        self.dirty.add(intent_id)
        self.wakeup.set()

    def _request_query(self, client_order_id: str) -> None:
        self.requery.add(client_order_id)
        self.wakeup.set()

    def record_local(self, order: Order, kind: EventKind, reason: str = "") -> Transition | None:
        return self.record(LocalEvent(order.client_order_id, kind, self.now_ms(), reason=reason))

    def current(self, client_order_id: str) -> Order:
        order = self.store.get_order(client_order_id)
        if order is None:
            raise UnknownOrder(client_order_id)
        return order

    # -- placing --------------------------------------------------------------------------------
    async def open_position(
        self,
        symbol: str,
        side: Side,
        quantity: Decimal,
        *,
        stop_loss: Decimal | None,
        take_profit: Decimal | None,
        order_type: Literal["MARKET", "LIMIT"] = "MARKET",
        price: Decimal | None = None,
        post_only: bool = False,
        reference_price: Decimal | None = None,
        before_send: Callable[[Intent, Order], None] | None = None,
    ) -> Placement:
        """An entry with its bracket: the stop and take-profit follow the entry's first fill.

        ``before_send(intent, entry)`` runs (synchronously) once both are written and before the
        entry is sent: what a caller records about the entry is in SQLite before the exchange
        knows of it (a maker entry's timeout row).
        """
        side = Side(side)
        rules = self.client.symbol_rules(symbol)
        if any(intent.symbol == symbol for intent in self.store.open_intents()):
            raise SymbolBusy(f"{symbol} already has an open intent")
        stop = rules.round_trigger(stop_loss) if stop_loss is not None else None
        target = rules.round_trigger(take_profit) if take_profit is not None else None
        try:
            qty, rounded = rules.prepare_order(
                side.value, order_type, quantity, price, reference_price=reference_price
            )
            brackets.check_prices(side, stop, target, rounded or reference_price)
        except RejectedError as exc:
            return self._refuse(symbol, side, quantity, price, order_type, stop, target, exc)
        intent = self.store.create_intent(symbol, side, qty, stop_price=stop, take_profit_price=target)
        entry = self.store.create_order(
            intent.intent_id, OrderKind.ENTRY, side=side, type=OrderType(order_type), qty=qty, price=rounded
        )
        if before_send is not None:
            before_send(intent, entry)
        reason = await self.submit(entry, post_only=post_only)
        await self.ensure_bracket(intent.intent_id)
        return Placement(
            self.store.get_intent(intent.intent_id) or intent, self.current(entry.client_order_id), reason
        )

    def _refuse(
        self,
        symbol: str,
        side: Side,
        quantity: Decimal,
        price: Decimal | None,
        order_type: str,
        stop: Decimal | None,
        target: Decimal | None,
        exc: RejectedError,
    ) -> Placement:
        """Record a placement the filters refused: ``REJECT_LOCAL``, intent ``CANCELED``, nothing sent."""
        intent = self.store.create_intent(symbol, side, quantity, stop_price=stop, take_profit_price=target)
        entry = self.store.create_order(
            intent.intent_id,
            OrderKind.ENTRY,
            side=side,
            type=OrderType(order_type),
            qty=quantity,
            price=price,
        )
        reason = _reason(exc)
        self.record_local(entry, EventKind.REJECT_LOCAL, reason)
        intent = self.store.set_intent_status(intent.intent_id, IntentStatus.CANCELED)
        logger.warning("%s %s %s refused locally: %s", symbol, side.value, quantity, reason)
        return Placement(intent, self.current(entry.client_order_id), reason)

    async def close_position(self, intent_id: str, quantity: Decimal | None = None) -> Order | None:
        """A reduce-only MARKET ``CLOSE`` order for the intent's exposure (``None`` if one is live)."""
        intent = self.store.get_intent(intent_id)
        if intent is None:
            raise KeyError(intent_id)
        orders = self.store.orders_of_intent(intent_id)
        if brackets.exited(orders):
            return None  # already on its way out (a leg fired, or a close executed)
        if quantity is None:
            entries = [o for o in orders if o.kind is OrderKind.ENTRY]
            quantity = sum((o.executed_qty for o in entries), Decimal(0)) if entries else intent.qty
        qty = self.client.symbol_rules(intent.symbol).round_quantity(quantity, market=True)
        if qty <= 0:
            return None
        try:
            order = self.store.create_order(
                intent_id, OrderKind.CLOSE, side=brackets.exit_side(intent.side), type=OrderType.MARKET,
                qty=qty, reduce_only=True,
            )  # fmt: skip
        except LiveOrderExists:
            return None
        await self.submit(order)
        self._mark(intent_id)
        return self.current(order.client_order_id)

    async def submit(self, order: Order, *, post_only: bool = False) -> str:
        """Record ``SEND``, send, record the outcome.  Returns the refusal reason ("" if none)."""
        cid = order.client_order_id
        self.inflight.add(cid)
        try:
            return await self._submit(order, post_only)
        finally:
            self.inflight.discard(cid)

    async def _submit(self, order: Order, post_only: bool) -> str:
        if self.record_local(order, EventKind.SEND) is None:
            return "not sent: SEND refused"
        cid = order.client_order_id
        try:
            if order.is_algo:
                assert order.trigger_price is not None
                algo = await self.client.new_algo_order(
                    order.symbol, order.side.value, order.type.value, order.trigger_price,
                    close_position=order.close_position, client_algo_id=cid,
                    quantity=None if order.close_position else order.qty, reduce_only=order.reduce_only,
                    timeout_s=self.send_timeout_s,
                )  # fmt: skip
                update = update_from_algo(algo, self.now_ms())
                raw: object = algo.model_dump(mode="json")
            else:
                assert order.qty is not None
                reply = await self.client.new_order(
                    order.symbol, order.side.value, "MARKET" if order.type is OrderType.MARKET else "LIMIT",
                    order.qty, order.price, reduce_only=order.reduce_only, client_order_id=cid,
                    post_only=post_only, check_filters=False, timeout_s=self.send_timeout_s,
                )  # fmt: skip
                update = update_from_order(reply, self.now_ms(), client_order_id=cid)
                raw = reply.model_dump(mode="json")
        except asyncio.CancelledError:
            self.record_local(order, EventKind.UNKNOWN_OUTCOME, "cancelled while sending")
            raise
        except FatalError as exc:
            self._reject(order, exc)
            raise
        except RejectedError as exc:  # the exchange said no (a local refusal here is a bug upstream)
            return self._reject(order, exc)
        except UnknownOutcomeError as exc:
            logger.warning("%s: outcome unknown (%s); querying by client id", cid, exc)
            self.record_local(order, EventKind.UNKNOWN_OUTCOME, _reason(exc))
            await self.query(self.current(cid))
            return ""
        except RetryableError as exc:  # failed before executing (429 after retries, 5xx "failed")
            return self._reject(order, exc, prefix="not executed: ")
        except Exception as exc:  # an unreadable reply: it may have executed
            logger.exception("%s: unexpected failure while sending; querying", cid)
            self.record_local(order, EventKind.UNKNOWN_OUTCOME, repr(exc))
            self._request_query(cid)
            return ""
        if update is not None:
            self.record(update, raw)
        else:
            self._request_query(cid)
        return ""

    def _reject(self, order: Order, exc: BaseException, prefix: str = "") -> str:
        reason = prefix + _reason(exc)
        logger.warning("%s %s rejected: %s", order.client_order_id, order.kind.value, reason)
        self.record(
            OrderUpdate(order.client_order_id, VenueStatus.REJECTED, self.now_ms(), "rest", reason=reason)
        )
        return reason

    # -- querying -------------------------------------------------------------------------------
    async def query(self, order: Order) -> Order:
        """Look ``order`` up by its client id and record what the exchange says; returns it after."""
        cid = order.client_order_id
        if order.state is OrderState.PENDING:
            self.record_local(order, EventKind.REJECT_LOCAL, "never sent (found PENDING)")
            return self.current(cid)
        try:
            if order.is_algo:
                algo = await self.client.get_algo_order(client_algo_id=cid)
                update = update_from_algo(algo, self.now_ms())
                if update is not None:
                    self.record(update, algo.model_dump(mode="json"))
                actual = update.exchange_order_id if update is not None else None
                if actual is not None:
                    triggered = await self.client.get_order(order.symbol, order_id=int(actual))
                    follow = update_from_order(triggered, self.now_ms(), client_order_id=cid)
                    if follow is not None:
                        self.record(follow, triggered.model_dump(mode="json"))
            else:
                reply = await self.client.get_order(order.symbol, client_order_id=cid)
                found = update_from_order(reply, self.now_ms(), client_order_id=cid)
                if found is not None:
                    self.record(found, reply.model_dump(mode="json"))
        except NotFoundError as exc:
            transition = self.record_local(order, EventKind.QUERY_NOT_FOUND, _reason(exc))
            if transition is not None and self.tracker.should_declare_lost(transition.order):
                logger.error(
                    "%s declared lost after %d not-found replies", cid, transition.order.not_found_count
                )
                self.record_local(transition.order, EventKind.LOST, "not found")
            return self.current(cid)
        except (RetryableError, UnknownOutcomeError) as exc:
            logger.warning("query of %s failed (%s); the poll will try again", cid, exc)
            return self.current(cid)
        await self.backfill_fills(self.current(cid))
        return self.current(cid)

    async def backfill_fills(self, order: Order) -> None:
        """Fetch the trades of an order whose executed quantity is ahead of its recorded fills."""
        if order.exchange_order_id is None or order.executed_qty <= order.filled_qty_from_fills:
            return
        try:
            trades = await self.client.get_user_trades(order.symbol, order_id=int(order.exchange_order_id))
        except (RetryableError, UnknownOutcomeError, RejectedError) as exc:
            logger.warning("trades of %s not fetched: %s", order.client_order_id, exc)
            return
        for trade in trades:
            if trade.id not in order.trade_ids:
                self.record(fill_from_trade(trade, order.client_order_id), trade.model_dump(mode="json"))

    # -- cancelling -----------------------------------------------------------------------------
    async def cancel(self, client_order_id: str) -> Order:
        """Cancel one of our orders and record the result (a racing fill is found by the query)."""
        order = self.current(client_order_id)
        if order.is_final:
            return order
        if order.state is OrderState.PENDING:
            self.record_local(order, EventKind.REJECT_LOCAL, "cancelled before sending")
            return self.current(client_order_id)
        try:
            if order.is_algo:
                ack = await self.client.cancel_algo_order(client_algo_id=client_order_id)
                self.record(
                    OrderUpdate(
                        client_order_id, VenueStatus.CANCELED, self.now_ms(), "rest", algo_id=str(ack.algoId)
                    ),
                    ack.model_dump(mode="json"),
                )
            else:
                reply = await self.client.cancel_order(order.symbol, client_order_id=client_order_id)
                update = update_from_order(reply, self.now_ms(), client_order_id=client_order_id)
                if update is not None:
                    self.record(update, reply.model_dump(mode="json"))
        except NotFoundError:  # -2011: already filled, expired or never there: the query tells
            return await self.query(self.current(client_order_id))
        except (RetryableError, UnknownOutcomeError) as exc:
            logger.warning("cancel of %s failed (%s); querying", client_order_id, exc)
            return await self.query(self.current(client_order_id))
        return await self.query(self.current(client_order_id))

    async def check_position(self, symbol: str) -> Decimal:
        """Compare the exchange's position with what SQLite expects; re-run the bracket rules with it."""
        net = sum((p.positionAmt for p in await self.client.get_open_positions(symbol)), Decimal(0))
        expected = Decimal(0)
        intents = [i for i in self.store.open_intents() if i.symbol == symbol]
        for intent in intents:
            sign = 1 if intent.side is Side.BUY else -1
            for order in self.store.orders_of_intent(intent.intent_id):
                expected += sign * order.executed_qty * (1 if order.kind is OrderKind.ENTRY else -1)
        if net != expected:
            logger.error("%s position %s on the exchange, %s expected from SQLite", symbol, net, expected)
        for intent in intents:
            await self.ensure_bracket(intent.intent_id, net)
        return net

    # -- brackets -------------------------------------------------------------------------------
    async def ensure_bracket(self, intent_id: str, position_qty: Decimal | None = None) -> list[Action]:
        """Apply the bracket rules to one intent (one run per intent at a time); returns the actions."""
        lock = self._locks.setdefault(intent_id, asyncio.Lock())
        async with lock:
            intent = self.store.get_intent(intent_id)
            if intent is None:
                return []
            actions = brackets.plan(intent, self.store.orders_of_intent(intent_id), position_qty)
            for action in actions:
                await self._execute(intent, action)
        closed = self.store.get_intent(intent_id)
        if closed is not None and closed.status is not IntentStatus.OPEN and not lock.locked():
            self._locks.pop(intent_id, None)
        return actions

    async def _execute(self, intent: Intent, action: Action) -> None:
        logger.info("intent %s: %s (%s)", intent.intent_id, action.kind.value, action.reason)
        if action.kind is ActionKind.CANCEL:
            assert action.client_order_id is not None
            await self.cancel(action.client_order_id)
        elif action.kind is ActionKind.CLOSE_INTENT:
            assert action.status is not None
            self.store.set_intent_status(intent.intent_id, action.status)
        else:
            await self._place_leg(intent, action.kind)

    async def _place_leg(self, intent: Intent, kind: ActionKind) -> None:
        stop = kind is ActionKind.PLACE_STOP
        failed_at = self._leg_failures.get((intent.intent_id, kind))
        if failed_at is not None and time.monotonic() - failed_at < self.leg_retry_s:
            return  # refused a moment ago: the sweep tries again
        entry = brackets.latest_legs(self.store.orders_of_intent(intent.intent_id)).get(OrderKind.ENTRY)
        try:
            leg = self.store.create_order(
                intent.intent_id, OrderKind.STOP_LOSS if stop else OrderKind.TAKE_PROFIT,
                side=brackets.exit_side(intent.side),
                type=OrderType.STOP_MARKET if stop else OrderType.TAKE_PROFIT_MARKET, qty=None,
                trigger_price=intent.stop_price if stop else intent.take_profit_price,
                close_position=True, parent_id=None if entry is None else entry.client_order_id,
            )  # fmt: skip
        except LiveOrderExists:
            return
        reason = await self.submit(leg)
        if not reason:
            self._leg_failures.pop((intent.intent_id, kind), None)
            return
        self._leg_failures[(intent.intent_id, kind)] = time.monotonic()
        if reason.startswith(f"{CODE_WOULD_TRIGGER}:"):  # the price is already beyond the trigger
            net = sum(
                (p.positionAmt for p in await self.client.get_open_positions(intent.symbol)), Decimal(0)
            )
            if brackets.holds(intent.side, net):
                logger.error(
                    "intent %s: %s would trigger at once; closing at market", intent.intent_id, kind.value
                )
                await self.close_position(intent.intent_id, abs(net))
                return
            orders = self.store.orders_of_intent(intent.intent_id)
            for action in brackets.plan(intent, orders, net):  # flat: cancel what is left, close
                if action.kind in (ActionKind.CANCEL, ActionKind.CLOSE_INTENT):
                    await self._execute(intent, action)
