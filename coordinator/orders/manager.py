"""``OrderManager``: sends, queries and cancels orders; persist first, act after.

The life of a placement (the store's contract, :mod:`coordinator.orders.store`):

1. the intent and its ``PENDING`` entry (deterministic client id) are written in ONE transaction
   (an intent never exists without its entry); quantities and prices were rounded and checked by
   :class:`~coordinator.exchange.filters.SymbolRules` first -- a local refusal is recorded as
   ``REJECT_LOCAL`` and nothing is sent;
2. ``SEND`` is recorded, and only then the request leaves with that client id;
3. the reply is recorded: success -> the reply's ``OrderUpdate``; a failure follows ONE rule:

   **only a reply that proves the order was not accepted may reject it; everything else is
   ``UNKNOWN_OUTCOME``, resolved by a query by client id** (:func:`proves_not_accepted`).

   Proof of "not accepted": a 4xx refusal (:class:`RejectedError`, credentials refused
   :class:`FatalError`); a request that never left (``RetryableError(sent=False)``); a 429/418
   (:class:`RateLimitError`: refused before execution) or -1021 (:class:`ClockSkewError`: refused
   at the door); an error reply Binance documents as "failed, not executed" (5xx "Service
   Unavailable" / "Internal error" / -1001 / -1008, translated to :class:`RetryableError` with
   its HTTP status).  Anything else may have executed: a timeout or dropped connection
   (:class:`UnknownOutcomeError`), a 503 "Unknown error", a 2xx whose body is unreadable
   (:class:`UnreadableReplyError`: the venue accepted it), a reply that fails schema
   validation, any unexpected exception, a cancellation while sending;
4. a query that finds the order records it; -2013 records ``QUERY_NOT_FOUND``, and after
   ``tracker.lost_after`` of them (spaced by the poll interval) ``LOST``.

Every change goes through :meth:`OrderManager.record` (synchronous, on the event-loop thread).

- A report that contradicts a final state (a fill after a cancel, an order recorded ``REJECTED``
  that the venue acknowledges or fills) is a *correction*: the venue's state wins through the
  ``CORRECTION`` move (:mod:`coordinator.orders.states`), the store reopens the intent in the same
  transaction, and the intent is queued for its bracket check (``dirty`` and ``corrected``: the
  monitor protects it in the round that saw the correction) along with a position check.
- An event the table refuses (:class:`IllegalTransition`) is kept (``applied = 0``) and the order
  re-queried with an exponential backoff (``requery_base_s`` doubling up to ``requery_max_s``).
  After ``conflict_cap`` refusals in a row the order is handed to reconciliation
  (``for_reconciliation``; the monitor stops querying it) and ONE error line says so; the count is
  ``handed_to_reconciliation``.
- A ``reopened`` transition (a lost order found) triggers a position check.

Follow-up work (bracket legs, cancelling the other leg) is queued by intent id and done by
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
    ClockSkewError,
    FatalError,
    NotFoundError,
    RateLimitError,
    RejectedError,
    RetryableError,
    UnknownOutcomeError,
)
from coordinator.exchange.priority import Priority, raised_to
from coordinator.orders import brackets
from coordinator.orders.brackets import Action, ActionKind
from coordinator.orders.events import Event, LocalEvent, OrderUpdate, VenueStatus
from coordinator.orders.machine import IllegalTransition, Transition
from coordinator.orders.models import Intent, IntentStatus, Order, OrderKind, OrderType
from coordinator.orders.states import EventKind, OrderState
from coordinator.orders.store import LiveOrderExists, OrderStore, UnknownOrder
from coordinator.orders.tracker import OrderTracker
from coordinator.orders.venue_events import (
    fill_from_trade,
    update_from_algo,
    update_from_order,
)
from coordinator.side import Side
from xylen.timeutil import wall_ms

logger = logging.getLogger(__name__)

CODE_WOULD_TRIGGER = -2021


class SymbolBusy(Exception):
    """The symbol already has an open intent (one bracket per symbol: closePosition legs net)."""


def proves_not_accepted(exc: BaseException) -> bool:
    """Whether an error from a placement proves the venue did not accept the order.

    The rule of the module docstring: a refusal (4xx, credentials), a request that never left, a
    rate-limit or clock refusal, or an error reply documented as "failed, not executed" proves it;
    anything else (timeouts, "Unknown error", a 2xx with an unreadable body, unexpected
    exceptions) may have executed and is ``UNKNOWN_OUTCOME``.
    """
    if isinstance(exc, UnknownOutcomeError):
        return False
    if isinstance(exc, RejectedError | FatalError):
        return True
    if isinstance(exc, RetryableError):
        if not exc.sent or isinstance(exc, RateLimitError | ClockSkewError):
            return True
        # an error reply translated as "failed, not executed"; a 2xx or no reply at all proves nothing
        return exc.status is not None and not 200 <= exc.status < 300
    return False


def _query_priority(order: Order) -> Priority:
    """How urgent a lookup of ``order`` is: protective legs first, then closes, then the rest."""
    if order.is_algo:
        return Priority.PROTECT
    if order.reduce_only:
        return Priority.CLOSE
    return Priority.ENTRY


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
        requery_base_s: float = 1.0,
        requery_max_s: float = 30.0,
        conflict_cap: int = 5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.store = store
        self.tracker = tracker or OrderTracker()
        self.now_ms = now_ms
        self.send_timeout_s = send_timeout_s
        self.illegal = 0  # events refused by the transition table
        self.reopened = 0  # final orders that came back to life
        self.corrections = 0  # reports that overruled a final state (CORRECTION moves)
        self.handed_to_reconciliation = 0  # orders whose conflicts outlasted ``conflict_cap``
        self.dirty: set[str] = set()  # intents whose bracket must be checked
        self.corrected: set[str] = set()  # intents reopened by a correction: protect this round
        self.requery: set[str] = set()  # orders to look up on the exchange now
        self.requery_base_s = requery_base_s
        self.requery_max_s = requery_max_s
        self.conflict_cap = conflict_cap
        self.conflicts: dict[str, int] = {}  # order -> refused events in a row
        self.requery_due: dict[str, float] = {}  # order -> when (clock s) to re-query it after a refusal
        self.for_reconciliation: set[str] = set()  # lasting conflicts: not re-queried, reconciled
        self.reconciled_conflicts: set[str] = set()  # those of them reconciliation has reported
        self._clock = clock
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
            self._refused(event.client_order_id, exc)
            return None
        order = transition.order
        self.tracker.update(order, self.now_ms())
        if transition.changed:
            self.conflicts.pop(order.client_order_id, None)
            self.requery_due.pop(order.client_order_id, None)
            self.for_reconciliation.discard(order.client_order_id)
            self.reconciled_conflicts.discard(order.client_order_id)
        if transition.corrected:
            self.corrections += 1
            self.corrected.add(order.intent_id)
            self.position_checks.add(order.symbol)
            logger.error(
                "%s: the venue reports %s for an order recorded %s; corrected to %s, intent %s reopened",
                order.client_order_id, transition.kind.value, transition.before.value, transition.after.value,
                order.intent_id,
            )  # fmt: skip
            others = [
                i.intent_id
                for i in self.store.open_intents()
                if i.symbol == order.symbol and i.intent_id != order.intent_id
            ]
            if others:
                logger.error(
                    "%s: another intent is open on %s too: %s", order.intent_id, order.symbol, others
                )
        elif transition.reopened:
            self.reopened += 1
            self.position_checks.add(order.symbol)
            logger.error(
                "%s reopened (%s -> %s): checking the %s position for a double exposure",
                order.client_order_id, transition.before.value, transition.after.value, order.symbol,
            )  # fmt: skip
        if transition.changed:
            self._mark(order.intent_id)
        return transition

    def _refused(self, client_order_id: str, exc: IllegalTransition) -> None:
        """Re-query an order whose event was refused, with backoff; past the cap, reconciliation."""
        if client_order_id in self.for_reconciliation:
            logger.debug("refused event for %s (already handed to reconciliation): %s", client_order_id, exc)
            return
        count = self.conflicts.get(client_order_id, 0) + 1
        if count > self.conflict_cap:
            self.conflicts.pop(client_order_id, None)
            self.requery_due.pop(client_order_id, None)
            self.requery.discard(client_order_id)
            self.for_reconciliation.add(client_order_id)
            self.handed_to_reconciliation += 1
            self.wakeup.set()
            logger.error(
                "%s: %d refused events in a row (last: %s); no more re-queries, handed to reconciliation",
                client_order_id, count, exc,
            )  # fmt: skip
            return
        self.conflicts[client_order_id] = count
        delay = min(self.requery_max_s, self.requery_base_s * 2 ** (count - 1))
        self.requery_due[client_order_id] = self._clock() + delay
        self.wakeup.set()
        logger.warning("refused event (%s); re-querying %s in %.1f s", exc, client_order_id, delay)

    def take_due_requeries(self) -> list[str]:
        """The orders whose backed-off re-query is due now (removed from the schedule)."""
        now = self._clock()
        due = [cid for cid, at in self.requery_due.items() if at <= now]
        for cid in due:
            del self.requery_due[cid]
        return due

    def next_requery_in(self) -> float | None:
        """Seconds until the next backed-off re-query (``None``: none scheduled)."""
        if not self.requery_due:
            return None
        return max(0.0, min(self.requery_due.values()) - self._clock())

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
        if self.symbol_busy(symbol):
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
        intent, entry = self.store.create_intent_with_entry(
            symbol, side, qty, type=OrderType(order_type), price=rounded, stop_price=stop,
            take_profit_price=target,
        )  # fmt: skip
        if before_send is not None:
            before_send(intent, entry)
        reason = await self.submit(entry, post_only=post_only)
        await self.ensure_bracket(intent.intent_id)
        return Placement(
            self.store.get_intent(intent.intent_id) or intent, self.current(entry.client_order_id), reason
        )

    def symbol_busy(self, symbol: str) -> bool:
        """Whether an open intent holds ``symbol``.

        An open intent without any order (written by a version that created the intent and its
        entry in two transactions, and died in between) never reached the exchange: it is closed
        ``CANCELED`` here, with a log line, instead of blocking the symbol forever.
        """
        busy = False
        for intent in self.store.open_intents():
            if intent.symbol != symbol:
                continue
            if not self.store.orders_of_intent(intent.intent_id):
                self.store.set_intent_status(intent.intent_id, IntentStatus.CANCELED)
                logger.warning(
                    "intent %s on %s has no order: closed CANCELED (never sent)", intent.intent_id, symbol
                )
                continue
            busy = True
        return busy

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
        intent, entry = self.store.create_intent_with_entry(
            symbol, side, quantity, type=OrderType(order_type), price=price, stop_price=stop,
            take_profit_price=target,
        )  # fmt: skip
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
                if order.trigger_price is None:
                    raise RuntimeError(f"{cid}: an algo order without its trigger price")
                algo = await self.client.new_algo_order(
                    order.symbol, order.side.value, order.type.value, order.trigger_price,
                    close_position=order.close_position, client_algo_id=cid,
                    quantity=None if order.close_position else order.qty, reduce_only=order.reduce_only,
                    timeout_s=self.send_timeout_s,
                )  # fmt: skip
                update = update_from_algo(algo, self.now_ms())
                raw: object = algo.model_dump(mode="json")
            else:
                if order.qty is None:
                    raise RuntimeError(f"{cid}: a regular order without its quantity")
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
        except Exception as exc:  # the rule of the module docstring decides REJECTED or UNKNOWN
            if proves_not_accepted(exc):
                prefix = "not executed: " if isinstance(exc, RetryableError) else ""
                reason = self._reject(order, exc, prefix=prefix)
                if isinstance(exc, FatalError):
                    raise
                return reason
            if isinstance(exc, UnknownOutcomeError):
                logger.warning("%s: outcome unknown (%s); querying by client id", cid, exc)
                self.record_local(order, EventKind.UNKNOWN_OUTCOME, _reason(exc))
                await self.query(self.current(cid))
                return ""
            logger.exception("%s: unexpected failure while sending (it may have executed); querying", cid)
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
        """Look ``order`` up by its client id and record what the exchange says; returns it after.

        The reads go with the order's own priority: a protective leg's lookup (its outcome decides
        whether a position has its stop) with protection, a close's with closes, ahead of market data.
        """
        with raised_to(_query_priority(order)):
            return await self._query(order)

    async def _query(self, order: Order) -> Order:
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

    async def protect(self, intent_id: str) -> list[ActionKind]:
        """Place the missing stop / take-profit of an intent, whatever its entry's row says.

        For a position the exchange shows while SQLite cannot account for it (an entry whose
        reports the table keeps refusing): the ``closePosition`` legs cover the whole position.
        """
        intent = self.store.get_intent(intent_id)
        if intent is None or intent.status is not IntentStatus.OPEN:
            return []
        legs = brackets.latest_legs(self.store.orders_of_intent(intent_id))
        placed: list[ActionKind] = []
        for kind, leg_kind, price in (
            (ActionKind.PLACE_STOP, OrderKind.STOP_LOSS, intent.stop_price),
            (ActionKind.PLACE_TAKE_PROFIT, OrderKind.TAKE_PROFIT, intent.take_profit_price),
        ):
            leg = legs.get(leg_kind)
            if price is not None and (leg is None or leg.is_final):
                async with self._locks.setdefault(intent_id, asyncio.Lock()):
                    await self._place_leg(intent, kind)
                placed.append(kind)
        return placed

    async def _execute(self, intent: Intent, action: Action) -> None:
        logger.info("intent %s: %s (%s)", intent.intent_id, action.kind.value, action.reason)
        if action.kind is ActionKind.CANCEL:
            if action.client_order_id is None:
                raise RuntimeError(f"intent {intent.intent_id}: a cancel without its order")
            await self.cancel(action.client_order_id)
        elif action.kind is ActionKind.CLOSE_INTENT:
            if action.status is None:
                raise RuntimeError(f"intent {intent.intent_id}: a close without its status")
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
