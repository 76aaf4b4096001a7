"""Safety switches: halt and flatten, what triggers them, and who executes them.

Two actions, both recorded by the risk manager (the halt is persisted before anything is sent):

* **halt** (:meth:`RiskManager.halt_and_cancel_entries`): entries are refused until ``xylen risk
  reset``; every resting entry order is cancelled (ours, and any order on the venue that could open
  a position).  Protective stops and take-profits STAY: a position left without its stop is the
  worst outcome of a halt, and a halt is for "no new risk", not "no risk".
* **flatten** (:meth:`RiskManager.emergency_shutdown` then a final sweep): the halt, every open
  order cancelled (regular and algo), every position closed reduce-only at MARKET, then whatever
  order is still open cancelled again (the legs of the positions just closed).

Orders and positions SQLite knows go through the :class:`~coordinator.orders.manager.OrderManager`
(cancel, close), so SQLite stays the truth; what only the venue knows is cancelled or closed with
the raw client (:class:`VenueExecutor`).

Triggers (checked by :class:`SafetySwitch` every ``poll_s`` and at once after each beat):

* the daily loss limit latched by the risk manager: ``risk.daily_loss_action`` -- ``block`` (only
  entries refused until 00:00 UTC, as the latch does), ``halt`` or ``flatten``;
* breaker escalation: a breaker whose trips within its clean period reach
  ``risk.breaker_halt_level`` (0: never) does ``risk.breaker_halt_action`` (``halt`` or ``flatten``);
* ``xylen risk halt [--flatten]``: a row in ``halt_requests``.

Every action is one ``halt_requests`` row, written first and executed after; an automatic trigger
has a ``trigger_key`` (``daily:<utc day>``, ``breaker:<kind>:<trip ms>``) so it fires once, also
across restarts.  The home's lock (:mod:`coordinator.storage.home_lock`, held by a coordinator
from its start to its exit) decides who executes: the CLI hands a request to a running coordinator
and otherwise takes the lock and executes it itself (:func:`execute_offline`).  A claim is one
conditional UPDATE, so one process executes a request.

Entries and the switch share :attr:`SafetySwitch.gate`: an entry holds it from its last risk check
to its send, a halt from its persisted flag through its cancels, so no entry can slip between.

The dashboard's control API acts through :class:`DashboardControls`: pause / resume entries (the
risk manager's ``trading_enabled`` is off while paused, so every entry is refused with
``trading_disabled``; positions and their brackets stay managed; the newest pause or resume in the
journal's ``control_actions`` survives a restart), halt or halt and flatten (a ``halt_requests`` row
with actor ``dashboard``, executed by the switch like any other; the answer waits ``wait_s`` (8 s,
inside a browser's patience) for its outcome, else it reports the request still pending or running
and the ``risk`` message tells the end) and reset one breaker.  Each action is one
``control_actions`` row and one WARNING line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from coordinator.exchange.errors import ExchangeError, NotFoundError
from coordinator.exchange.facade import FuturesExchange
from coordinator.feed_models import RiskStateView
from coordinator.orders.models import OrderKind
from coordinator.risk.breakers import BreakerKind
from coordinator.risk.manager import OpenPosition, RiskManager, ShutdownReport
from coordinator.risk.state import RiskStore
from coordinator.storage.db import init_db
from coordinator.storage.journal import Journal
from xylen.config.schema import XylenConfig
from xylen.config.secrets import Secrets
from xylen.timeutil import wall_ms

logger = logging.getLogger(__name__)

HALT_PREFIX = "xh"  # client ids of the reduce-only closes sent for positions SQLite does not know


def actor_name() -> str:
    """``user@host`` of this process."""
    try:
        user = os.getlogin()
    except OSError:
        user = os.environ.get("USER", "unknown")
    return f"{user}@{socket.gethostname()}"


# ---------------------------------------------------------------------- requests


@dataclass(frozen=True, slots=True)
class HaltRequest:
    """One ``halt_requests`` row."""

    id: int
    requested_ms: int
    actor: str
    reason: str
    flatten: bool
    trigger_key: str | None
    status: str
    claimed_by: str | None
    done_ms: int | None
    detail: str


_COLUMNS = "id, requested_ms, actor, reason, flatten, trigger_key, status, claimed_by, done_ms, detail"


class HaltRequests:
    """The ``halt_requests`` table over one migrated connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def request(
        self, reason: str, *, flatten: bool, actor: str, now_ms: int, trigger_key: str | None = None
    ) -> int | None:
        """Write a pending request; its id, or ``None`` when ``trigger_key`` has fired already."""
        cursor = self.conn.execute(
            "INSERT INTO halt_requests (requested_ms, actor, reason, flatten, trigger_key)"
            " VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (trigger_key) DO NOTHING",
            (now_ms, actor, reason, int(flatten), trigger_key),
        )
        return cursor.lastrowid if cursor.rowcount else None

    def get(self, request_id: int) -> HaltRequest | None:
        rows = self._select("WHERE id = ?", (request_id,))
        return rows[0] if rows else None

    def pending(self) -> list[HaltRequest]:
        return self._select("WHERE status = 'pending' ORDER BY id", ())

    def latest(self) -> HaltRequest | None:
        rows = self._select("ORDER BY id DESC LIMIT 1", ())
        return rows[0] if rows else None

    def claim(self, request_id: int, by: str) -> bool:
        """Take a pending request (True) -- False when another process took it first."""
        cursor = self.conn.execute(
            "UPDATE halt_requests SET status = 'running', claimed_by = ? WHERE id = ? AND status = 'pending'",
            (by, request_id),
        )
        return cursor.rowcount == 1

    def finish(self, request_id: int, ok: bool, detail: str, now_ms: int) -> None:
        self.conn.execute(
            "UPDATE halt_requests SET status = ?, done_ms = ?, detail = ? WHERE id = ?",
            ("done" if ok else "failed", now_ms, detail, request_id),
        )

    def _select(self, where: str, args: tuple[object, ...]) -> list[HaltRequest]:
        sql = f"SELECT {_COLUMNS} FROM halt_requests {where}"  # nosec B608 # constant fragments; values bound
        rows = self.conn.execute(sql, args).fetchall()
        return [
            HaltRequest(int(i), int(at), actor, reason, bool(flat), key, status, by, done, detail)
            for i, at, actor, reason, flat, key, status, by, done, detail in rows
        ]


# ---------------------------------------------------------------------- executor


class VenueExecutor:
    """The risk manager's :class:`~coordinator.risk.manager.Executor` over the exchange facade."""

    def __init__(self, exchange: FuturesExchange) -> None:
        self.exchange = exchange
        self._closes = 0

    async def open_positions(self) -> list[OpenPosition]:
        net: dict[str, Decimal] = {}
        for p in await self.exchange.get_open_positions():
            net[p.symbol] = net.get(p.symbol, Decimal(0)) + p.positionAmt
        return [OpenPosition(symbol, qty) for symbol, qty in sorted(net.items()) if qty != 0]

    def _known_live(self, symbol: str, kinds: Iterable[OrderKind] | None = None) -> list[str]:
        """Client ids of the non-final orders SQLite holds for ``symbol``'s open intents."""
        store = self.exchange.store
        wanted = None if kinds is None else set(kinds)
        return [
            order.client_order_id
            for intent in store.open_intents()
            if intent.symbol == symbol
            for order in store.orders_of_intent(intent.intent_id)
            if not order.is_final and (wanted is None or order.kind in wanted)
        ]

    async def cancel_entry_orders(self, symbol: str) -> None:
        """Cancel every resting order on ``symbol`` that could open a position; keep stops and
        take-profits (reduce-only or ``closePosition``)."""
        for cid in self._known_live(symbol, (OrderKind.ENTRY,)):
            await self.exchange.manager.cancel(cid)
        await self._cancel_venue(symbol, protective_too=False)

    async def cancel_all_orders(self, symbol: str) -> None:
        """Cancel every open order on ``symbol``: ours through the order manager, the rest raw."""
        for cid in self._known_live(symbol):
            await self.exchange.manager.cancel(cid)
        await self._cancel_venue(symbol, protective_too=True)

    async def _cancel_venue(self, symbol: str, *, protective_too: bool) -> None:
        """Cancel what is still open on the venue (orders SQLite does not know, cancels not confirmed)."""
        client = self.exchange.client
        for order in await client.get_open_orders(symbol):
            if protective_too or self._may_open(order.clientOrderId, order.reduceOnly or order.closePosition):
                with contextlib.suppress(NotFoundError):  # filled or cancelled meanwhile
                    await client.cancel_order(symbol, order_id=order.orderId)
        for algo in await client.get_open_algo_orders(symbol):
            if protective_too or self._may_open(algo.clientAlgoId, algo.reduceOnly or algo.closePosition):
                with contextlib.suppress(NotFoundError):
                    await client.cancel_algo_order(algo_id=algo.algoId)

    def _may_open(self, client_id: str, reducing: bool) -> bool:
        """Whether an open venue order could open (or add to) a position: not reduce-only or
        ``closePosition``, and not one of our own exit legs."""
        if reducing:
            return False
        known = self.exchange.store.get_order(client_id)
        return known is None or known.kind is OrderKind.ENTRY

    async def close_position_reduce_only(self, symbol: str, side: str, quantity: Decimal) -> None:
        """Close ``quantity`` of ``symbol`` at MARKET, reduce-only: through the open intent when
        SQLite has one (a ``CLOSE`` order), else a raw order with an ``xh-`` client id."""
        for intent in self.exchange.store.open_intents():
            if intent.symbol == symbol and intent.side.value != side:
                order = await self.exchange.manager.close_position(intent.intent_id, quantity)
                if order is not None:
                    return
        rules = self.exchange.client.symbol_rules(symbol)
        qty = rules.round_quantity(quantity, market=True)
        if qty <= 0:
            return
        self._closes += 1
        cid = f"{HALT_PREFIX}-{wall_ms()}-{self._closes}"
        await self.exchange.client.new_order(
            symbol, "SELL" if side == "SELL" else "BUY", "MARKET", qty,
            reduce_only=True, client_order_id=cid, check_filters=False,
        )  # fmt: skip

    async def leftovers(self, symbols: Iterable[str]) -> tuple[list[OpenPosition], int]:
        """The positions and the number of open orders (regular and algo) left on ``symbols``."""
        wanted = set(symbols)
        positions = [p for p in await self.open_positions() if p.symbol in wanted]
        orders = 0
        for symbol in sorted(wanted):
            orders += len(await self.exchange.client.get_open_orders(symbol))
            orders += len(await self.exchange.client.get_open_algo_orders(symbol))
        return positions, orders


async def execute(
    request: HaltRequest,
    risk: RiskManager,
    executor: VenueExecutor,
    symbols: Iterable[str],
    now_ms: int,
    *,
    settle_timeout_s: float = 10.0,
) -> tuple[bool, str]:
    """Carry out one request: ``(ok, detail)``.  The halt stands whatever fails."""
    traded = tuple(sorted(set(symbols) | {i.symbol for i in executor.exchange.store.open_intents()}))
    if not request.flatten:
        report = await risk.halt_and_cancel_entries(executor, request.reason, now_ms, traded)
        return not report.errors, _summary(report, "halted; entries cancelled, stops kept")
    report = await risk.emergency_shutdown(executor, request.reason, now_ms, traded)
    touched = set(traded) | {symbol for symbol, _side, _qty in report.closed}
    deadline = time.monotonic() + settle_timeout_s
    positions: list[OpenPosition] = []
    orders = 0
    while True:  # the closes fill, then the legs they left behind are cancelled
        for symbol in sorted(touched):
            try:
                await executor.cancel_all_orders(symbol)
            except ExchangeError as exc:
                report.errors.append(f"cancel_all_orders {symbol}: {exc!r}")
        positions, orders = await executor.leftovers(touched)
        if (not positions and not orders) or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.2)
    if positions or orders:
        report.errors.append(
            f"left after {settle_timeout_s:.0f} s: {len(positions)} position(s), {orders} order(s)"
        )
    return not report.errors, _summary(report, "flattened")


def _summary(report: ShutdownReport, what: str) -> str:
    text = f"{what}: cancelled on {','.join(report.cancelled) or '-'}, closed {len(report.closed)}"
    return text + (f"; errors: {'; '.join(report.errors)}" if report.errors else "")


# ---------------------------------------------------------------------- the coordinator's switch


def action_of(config: XylenConfig) -> tuple[str, str, int]:
    """``(daily loss action, breaker halt action, breaker halt level)`` of ``config``."""
    risk = config.risk
    return risk.daily_loss_action, risk.breaker_halt_action, risk.breaker_halt_level


class SafetySwitch:
    """The running coordinator's side (module docstring): triggers, requests, feed state."""

    def __init__(
        self,
        exchange: FuturesExchange,
        requests: HaltRequests,
        risk: Callable[[], RiskManager],
        config: Callable[[], XylenConfig],
        clock_ms: Callable[[], int],
        *,
        publish: Callable[[RiskStateView], None] | None = None,
        on_halted: Callable[[bool], None] | None = None,
        poll_s: float = 1.0,
        settle_timeout_s: float = 10.0,
    ) -> None:
        self.exchange = exchange
        self.requests = requests
        self.risk = risk
        self.config = config
        self.clock_ms = clock_ms
        self.publish = publish
        self.on_halted = on_halted  # told the halt flag each round (the ``xylen_trading_halted`` gauge)
        self.poll_s = poll_s
        self.settle_timeout_s = settle_timeout_s
        self.executor = VenueExecutor(exchange)
        self.gate = asyncio.Lock()
        self.wakeup = asyncio.Event()
        self.executed: list[tuple[int, bool, str]] = []
        self.paused = False
        self._last_view: RiskStateView | None = None

    def apply_pause(self, risk: RiskManager) -> RiskManager:
        """``risk`` with entries refused while paused (for every risk manager the app builds)."""
        if self.paused:
            risk.trading_enabled = False
        return risk

    def set_paused(self, paused: bool) -> None:
        """Pause or resume entries now (the next risk check sees it) and publish the state."""
        self.paused = paused
        self.risk().trading_enabled = self.config().trading.enabled and not paused
        self._publish()

    def triggers(self) -> list[int]:
        """Write a request for every automatic trigger that has fired (once per key)."""
        risk, config = self.risk(), self.config()
        daily_action, breaker_action, level = action_of(config)
        state = risk.state
        now = self.clock_ms()
        made: list[int] = []
        if state.daily_limit_hit and daily_action != "block":
            reason = f"daily loss limit reached ({','.join(state.daily_limit_hit)})"
            made += self._trigger(reason, daily_action == "flatten", f"daily:{state.day}")
        if level > 0:
            for kind, breaker in state.breakers.states.items():
                if breaker.level >= level and breaker.blocking(now) and breaker.last_trip_ms is not None:
                    reason = f"breaker {kind.value} tripped {breaker.level} times within its clean period"
                    key = f"breaker:{kind.value}:{breaker.last_trip_ms}"
                    made += self._trigger(reason, breaker_action == "flatten", key)
        return made

    def _trigger(self, reason: str, flatten: bool, key: str) -> list[int]:
        request_id = self.requests.request(
            reason, flatten=flatten, actor="risk-manager", now_ms=wall_ms(), trigger_key=key
        )
        if request_id is None:
            return []
        logger.critical("risk: %s -> %s", reason, "flatten" if flatten else "halt")
        return [request_id]

    async def check(self) -> list[tuple[int, bool, str]]:
        """One round: fire triggers, execute pending requests, publish the state."""
        self.triggers()
        done: list[tuple[int, bool, str]] = []
        for request in self.requests.pending():
            if not self.requests.claim(request.id, f"coordinator:{os.getpid()}"):
                continue
            self._publish()
            async with self.gate:
                try:
                    ok, detail = await execute(
                        request, self.risk(), self.executor, self.config().market.symbols, self.clock_ms(),
                        settle_timeout_s=self.settle_timeout_s,
                    )  # fmt: skip
                except asyncio.CancelledError:
                    self.requests.finish(request.id, False, "interrupted", wall_ms())
                    raise
                except Exception as exc:
                    logger.exception("halt request %d failed", request.id)
                    ok, detail = False, repr(exc)
            self.requests.finish(request.id, ok, detail, wall_ms())
            (logger.warning if ok else logger.error)(
                "halt request %d (%s): %s", request.id, request.reason, detail
            )
            done.append((request.id, ok, detail))
        self.executed.extend(done)
        self._publish()
        return done

    def view(self) -> RiskStateView:
        """The risk state as the dashboard shows it."""
        risk = self.risk()
        latest = self.requests.latest()
        flatten = "none"
        if latest is not None and latest.flatten:
            flatten = {"pending": "pending", "running": "running", "done": "done"}.get(
                latest.status, "failed"
            )
        return RiskStateView(
            halted=risk.halted,
            reason=risk.state.halted_reason,
            halted_ms=risk.state.halted_ms,
            flatten=flatten,
            trading_enabled=risk.trading_enabled and self.config().trading.enabled,
            daily_limits=list(risk.state.daily_limit_hit),
            paused=self.paused,
        )

    def _publish(self) -> None:
        if self.publish is None and self.on_halted is None:
            return
        view = self.view()
        if self.on_halted is not None:
            self.on_halted(view.halted)
        if self.publish is not None and view != self._last_view:
            self._last_view = view
            self.publish(view)

    async def run(self) -> None:
        """Check every ``poll_s`` (sooner when :attr:`wakeup` is set) until cancelled."""
        while True:
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except (ExchangeError, sqlite3.Error):
                logger.exception("safety check failed; trying again in %.1f s", self.poll_s)
            self.wakeup.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), self.poll_s)


# ---------------------------------------------------------------------- the dashboard's controls


class DashboardControls:
    """The control API's actions (:class:`coordinator.ws_server.Controls`) over the switch."""

    ACTOR = "dashboard"

    def __init__(self, switch: SafetySwitch, journal: Journal, *, wait_s: float = 8.0) -> None:
        self.switch = switch
        self.journal = journal
        self.wait_s = wait_s

    def _record(self, action: str, detail: str, ok: bool = True) -> RiskStateView:
        self.journal.log_control(wall_ms(), self.ACTOR, action, detail, ok)
        (logger.warning if ok else logger.error)("dashboard control: %s (%s)", action, detail)
        return self.switch.view()

    async def pause(self) -> RiskStateView:
        self.switch.set_paused(True)
        return self._record("pause", "new entries refused; positions and brackets still managed")

    async def resume(self) -> RiskStateView:
        self.switch.set_paused(False)
        halted = self.switch.risk().halted
        return self._record("resume", "entries allowed" + (" once the halt is reset" if halted else ""))

    async def halt(self, flatten: bool) -> RiskStateView:
        """Write a halt request, wake the switch and wait (``wait_s`` at most) for its outcome."""
        action = "halt+flatten" if flatten else "halt"
        switch = self.switch
        request_id = switch.requests.request(
            f"{action} from the dashboard", flatten=flatten, actor=self.ACTOR, now_ms=wall_ms()
        )
        if request_id is None:  # no trigger key: never a duplicate
            raise RuntimeError("a halt request without a trigger key was not written")
        switch.wakeup.set()
        deadline = time.monotonic() + self.wait_s
        request = switch.requests.get(request_id)
        while request is not None and request.status in ("pending", "running"):
            if time.monotonic() >= deadline:
                return self._record(action, f"request {request_id} still {request.status}")
            await asyncio.sleep(0.05)
            request = switch.requests.get(request_id)
        ok = request is not None and request.status == "done"
        return self._record(action, f"request {request_id}: {request.detail if request else '?'}", ok)

    async def reset_breaker(self, name: str) -> RiskStateView | None:
        """Clear breaker ``name``'s cooldown and level (None: no such breaker)."""
        if name not in BreakerKind._value2member_map_:
            return None
        risk = self.switch.risk()
        now = wall_ms()
        breaker = risk.state.breakers.states[BreakerKind(name)]
        was = breaker.blocking(self.switch.clock_ms())
        breaker.clear()
        risk.state.event(now, "breaker_reset", name, self.ACTOR)
        if risk.store is not None:
            risk.store.save(risk.state)
        return self._record("reset-breaker", f"{name} ({'was tripped' if was else 'was not tripped'})")


# ---------------------------------------------------------------------- no coordinator running


async def execute_offline(
    config: XylenConfig, secrets: Secrets, database: Path, request_id: int, by: str
) -> tuple[bool, str]:
    """Claim ``request_id`` and carry it out from this process (no coordinator runs: the caller
    holds the home's lock):
    connect, reconcile SQLite with the venue, halt (and flatten), disconnect."""
    conn = init_db(database)
    try:
        halts = HaltRequests(conn)
        if not halts.claim(request_id, by):
            request = halts.get(request_id)
            return False, f"request {request_id} was taken by {request.claimed_by if request else '?'}"
        request = halts.get(request_id)
        if request is None:
            raise RuntimeError(f"halt request {request_id} vanished after it was claimed")
        risk = RiskManager.from_config(config, RiskStore(conn))
        try:
            exchange = await FuturesExchange.create(
                config.exchange, secrets, database, use_stream=False, symbols=config.market.symbols
            )
        except BaseException as exc:
            risk.halt(request.reason, wall_ms())  # the halt stands even when the venue is out of reach
            halts.finish(request_id, False, f"halted; exchange unreachable: {exc!r}", wall_ms())
            raise
        try:
            await exchange.start()
            ok, detail = await execute(
                request, risk, VenueExecutor(exchange), config.market.symbols, wall_ms()
            )
        except BaseException as exc:
            halts.finish(request_id, False, repr(exc), wall_ms())
            raise
        finally:
            await exchange.stop()
        halts.finish(request_id, ok, detail, wall_ms())
        return ok, detail
    finally:
        conn.close()


__all__ = [
    "DashboardControls",
    "HaltRequest",
    "HaltRequests",
    "SafetySwitch",
    "VenueExecutor",
    "actor_name",
    "execute",
    "execute_offline",
]
