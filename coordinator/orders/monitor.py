"""``Monitor``: keeps SQLite in step with the exchange while the coordinator runs.

Three supervised loops (each re-raises ``CancelledError``, logs and backs off on anything
else; they run in one :func:`supervise` group; :meth:`Monitor.stop` cancels and awaits with a
timeout):

- **stream**: user-data events (listen key kept alive by :class:`UserStream`) -> order events,
  recorded synchronously by the manager; ids that are not ours are ignored; a triggered order is
  mapped back to its algo order by exchange id when its client id is not one we know.
- **poll**: REST polling of every active order every ``poll_interval_s`` while the stream is down
  or silent for longer than that, and at once after :meth:`UserStream.take_resync`; fills the
  polls reveal are fetched from ``userTrades`` (deduplicated by trade id in the store).  Each
  interval also runs the *sweep*: positions are read and every open intent's bracket re-checked
  (a safety net for a missed event), ``UNKNOWN`` orders re-queried (so not-found queries are spaced
  by the interval), and a stop triggered more than ``trigger_grace_s`` ago but still unfilled --
  an unprotected position -- is re-queried and, if still stuck, cancelled so a new stop goes on.
  The sweep ends by counting the open positions left without an acknowledged stop of ours
  (:attr:`Monitor.unprotected`, the ``xylen_positions_unprotected`` gauge).
- **actions**: the follow-ups the manager queued (bracket legs, the other leg's cancel, re-queries);
  a re-query after a refused event waits for its backoff (the loop wakes when one is due).

An intent reopened by a correction (:attr:`OrderManager.corrected`) gets its bracket in the same
round that recorded the correction, whichever of the three saw it.  Orders handed to
reconciliation after lasting conflicts (:attr:`OrderManager.for_reconciliation`) are no longer
queried by the poll or the sweep; the sweep passes them to ``reconcile`` when one is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from decimal import Decimal
from typing import Any

from coordinator.exchange.errors import ExchangeError, FatalError
from coordinator.exchange.schemas import AlgoUpdate, OrderTradeUpdate, Position, UserEvent
from coordinator.exchange.user_stream import UserStream
from coordinator.orders.ids import is_ours
from coordinator.orders.manager import OrderManager
from coordinator.orders.models import IntentStatus, Order, OrderKind
from coordinator.orders.states import OrderState
from coordinator.orders.venue_events import events_from_order_trade, update_from_algo_event
from coordinator.side import Side

logger = logging.getLogger(__name__)


async def supervise(
    loops: dict[str, Callable[[], Coroutine[Any, Any, None]]], shutdown_timeout_s: float = 5.0
) -> None:
    """Run named loops as one group: the first crash (or a cancel) cancels and awaits the others."""
    tasks = [asyncio.create_task(loop(), name=name) for name, loop in loops.items()]
    try:
        done, _pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        for task in tasks:
            task.cancel()
        _done, pending = await asyncio.wait(tasks, timeout=shutdown_timeout_s)
        for task in pending:
            logger.error("task %s did not stop within %.1f s", task.get_name(), shutdown_timeout_s)


def net_positions(positions: list[Position]) -> dict[str, Decimal]:
    """Signed position amount per symbol (hedge-mode sides summed)."""
    net: dict[str, Decimal] = {}
    for position in positions:
        net[position.symbol] = net.get(position.symbol, Decimal(0)) + position.positionAmt
    return net


PROTECTING_STATES = frozenset({OrderState.NEW, OrderState.PARTIALLY_FILLED})
"""States in which a stop of ours is acknowledged by the venue and waiting to trigger."""


def unprotected_symbols(net: Mapping[str, Decimal], live: Iterable[Order]) -> list[str]:
    """Symbols with an open position and no acknowledged stop of ours on its closing side."""
    guarded = {
        (order.symbol, order.side)
        for order in live
        if order.kind is OrderKind.STOP_LOSS and order.state in PROTECTING_STATES
    }
    return sorted(
        symbol
        for symbol, amount in net.items()
        if amount != 0 and (symbol, Side.SELL if amount > 0 else Side.BUY) not in guarded
    )


class Monitor:
    """Stream consumer, REST poller and follow-up worker around one :class:`OrderManager`."""

    def __init__(
        self,
        manager: OrderManager,
        stream: UserStream | None,
        *,
        poll_interval_s: float = 10.0,
        trigger_grace_s: float = 60.0,
        backoff_s: float = 1.0,
        shutdown_timeout_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        reconcile: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self.manager = manager
        self.reconcile = reconcile  # resolves the orders handed to reconciliation (see the docstring)
        self.stream = stream
        self.poll_interval_s = poll_interval_s
        self.trigger_grace_s = trigger_grace_s
        self.backoff_s = backoff_s
        self.shutdown_timeout_s = shutdown_timeout_s
        self.polls = 0
        self.sweeps = 0
        self.ignored = 0  # stream events about orders that are not ours
        self.unprotected = 0  # open positions without a live stop of ours at the last sweep
        self._clock = clock
        self._task: asyncio.Task[None] | None = None

    # -- life cycle -----------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("monitor already started")
        loops: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {
            "orders-poll": self._poll_loop,
            "orders-actions": self._action_loop,
        }
        stream = self.stream
        if stream is not None:
            loops["orders-stream"] = lambda: self._stream_loop(stream)
        self._task = asyncio.create_task(supervise(loops, self.shutdown_timeout_s), name="orders-monitor")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError):
            await asyncio.wait_for(task, self.shutdown_timeout_s * 2)

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The supervising task (its exception, if any, is a crashed loop: stop the process)."""
        return self._task

    # -- stream ---------------------------------------------------------------------------------
    def handle_event(self, event: UserEvent) -> None:
        """Record one user-data event (synchronous bookkeeping)."""
        now = self.manager.now_ms()
        store = self.manager.store
        if isinstance(event, OrderTradeUpdate):
            data = event.o
            cid = data.c
            if store.get_order(cid) is None:
                known = store.find_by_exchange_id(data.s, str(data.i), id_kind="order")
                if known is None:
                    self.ignored += 1
                    if is_ours(cid):
                        logger.warning("stream: %s has our prefix but is not in SQLite", cid)
                    return
                cid = known.client_order_id
            for order_event in events_from_order_trade(data, now, cid):
                self.manager.record(order_event, event.model_dump(mode="json"))
        elif isinstance(event, AlgoUpdate):
            if store.get_order(event.o.caid) is None:
                self.ignored += 1
                return
            update = update_from_algo_event(event.o, now)
            if update is not None:
                self.manager.record(update, event.model_dump(mode="json"))

    async def _stream_loop(self, stream: UserStream) -> None:
        while True:
            event = await stream.events.get()
            try:
                self.handle_event(event)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("stream event %s not handled", event.e)

    # -- polling --------------------------------------------------------------------------------
    def stream_healthy(self) -> bool:
        return self.stream is not None and self.stream.is_healthy(self.poll_interval_s)

    async def poll_active(self) -> int:
        """Query every active order not in flight and back-fill recent fills; returns the count."""
        manager = self.manager
        now = manager.now_ms()
        count = 0
        for cid, order in list(manager.tracker.active.items()):
            if (
                cid in manager.inflight
                or cid in manager.for_reconciliation
                or order.state is OrderState.PENDING
            ):
                continue
            await manager.query(manager.current(cid))
            count += 1
        for order in list(manager.tracker.recently_closed(now).values()):
            await manager.backfill_fills(manager.current(order.client_order_id))
        manager.tracker.expire(now)
        await self.protect_corrected()
        self.polls += 1
        return count

    async def protect_corrected(self) -> None:
        """Bracket rules, with the exchange's position, for the intents a correction reopened."""
        manager = self.manager
        while manager.corrected:
            intent_id = manager.corrected.pop()
            intent = manager.store.get_intent(intent_id)
            if intent is None:
                continue
            net = net_positions(await manager.client.get_open_positions(intent.symbol))
            await manager.ensure_bracket(intent_id, net.get(intent.symbol, Decimal(0)))

    async def sweep(self) -> None:
        """Positions vs open intents, ``UNKNOWN`` re-queries, stale triggers (module docstring)."""
        manager = self.manager
        store = manager.store
        if manager.for_reconciliation - manager.reconciled_conflicts and self.reconcile is not None:
            await self.reconcile()
        for order in store.live_orders():
            if (
                order.client_order_id in manager.inflight
                or order.client_order_id in manager.for_reconciliation
            ):
                continue
            if order.state is OrderState.UNKNOWN:
                await manager.query(order)
            elif order.triggered_ms is not None and self._stale(order.triggered_ms):
                logger.error(
                    "%s triggered long ago, still unfilled: unprotected; re-checking", order.client_order_id
                )
                if not (await manager.query(order)).is_final:
                    await manager.cancel(order.client_order_id)
        intents = store.open_intents()
        snapshot = {i.intent_id: store.orders_of_intent(i.intent_id) for i in intents}
        net = net_positions(await manager.client.get_open_positions())
        for intent in intents:
            current = store.get_intent(intent.intent_id)
            if current is None or current.status is not IntentStatus.OPEN:
                continue
            unchanged = store.orders_of_intent(intent.intent_id) == snapshot[intent.intent_id]
            position = net.get(intent.symbol, Decimal(0)) if unchanged else None
            await manager.ensure_bracket(intent.intent_id, position)
        self.unprotected = len(unprotected_symbols(net, store.live_orders()))
        self.sweeps += 1

    def _stale(self, triggered_ms: int) -> bool:
        return self.manager.now_ms() - triggered_ms > self.trigger_grace_s * 1000

    async def _poll_loop(self) -> None:
        last_poll = last_sweep = self._clock()
        tick = min(0.5, self.poll_interval_s / 4)
        while True:
            await asyncio.sleep(tick)
            try:
                now = self._clock()
                resync = self.stream is not None and self.stream.take_resync()
                due = now - last_poll >= self.poll_interval_s
                if resync or (due and not self.stream_healthy()):
                    if resync:
                        logger.info("user stream resync: polling every active order")
                    await self.poll_active()
                    last_poll = now
                if now - last_sweep >= self.poll_interval_s:
                    await self.sweep()
                    last_sweep = now
            except asyncio.CancelledError:
                raise
            except FatalError:
                raise
            except Exception as exc:
                level = logging.WARNING if isinstance(exc, ExchangeError) else logging.ERROR
                logger.log(level, "order poll failed: %r; backing off", exc, exc_info=level == logging.ERROR)
                await asyncio.sleep(self.backoff_s)

    # -- follow-ups -----------------------------------------------------------------------------
    async def run_pending(self) -> None:
        """Do the queued follow-ups: re-queries, then bracket checks."""
        manager = self.manager
        manager.wakeup.clear()
        manager.requery.update(manager.take_due_requeries())
        while manager.requery:  # a refusal schedules its re-query later: this loop ends
            cid = manager.requery.pop()
            order = manager.store.get_order(cid)
            if order is not None and cid not in manager.inflight and cid not in manager.for_reconciliation:
                await manager.query(order)
        await self.protect_corrected()
        while manager.dirty:
            await manager.ensure_bracket(manager.dirty.pop())
        while manager.position_checks:
            await manager.check_position(manager.position_checks.pop())

    async def _action_loop(self) -> None:
        while True:
            due_in = self.manager.next_requery_in()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.manager.wakeup.wait(), due_in)
            try:
                await self.run_pending()
            except asyncio.CancelledError:
                raise
            except FatalError:
                raise
            except Exception as exc:
                level = logging.WARNING if isinstance(exc, ExchangeError) else logging.ERROR
                logger.log(
                    level, "order follow-up failed: %r; backing off", exc, exc_info=level == logging.ERROR
                )
                self.manager.wakeup.set()
                await asyncio.sleep(self.backoff_s)
