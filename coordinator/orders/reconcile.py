"""Reconciliation at start: SQLite and the exchange compared, every difference resolved and reported.

Rules, applied in this order (each difference is a ``reconciliation_report`` row with what was
done; the run ends with one summary log line and its ``reconciliation_runs`` row):

1. **Non-final orders in SQLite** are looked up one by one.  ``PENDING`` was never sent (``SEND``
   is persisted before a request leaves) -> ``REJECT_LOCAL`` (``pending_never_sent``).  Any other
   state is queried by client id and the answer recorded; a changed state is ``stale_state``; a
   -2013 counts towards ``LOST`` like any other not-found reply (``not_found``).
2. **Open orders and open algo orders on the exchange** (of ``symbols`` when given, else all):
   - with our prefix but unknown to SQLite: SQLite is written before every send, so such an order
     was placed by another copy of this database (a restored backup, a second instance).  An entry
     or a close (``unknown_ours``) is **cancelled**: it must never work without its record.  A
     protective order (a ``closePosition`` ``STOP_MARKET`` or ``TAKE_PROFIT_MARKET``) is left for
     rule 3, which knows the positions: it may be all that protects one;
   - known but final in SQLite (``final_but_open``): queried again and the answer recorded (a
     lost order that exists after all reopens);
   - foreign (no ``xy-`` prefix, placed by hand or by another program): reported and left alone
     (``foreign_order`` / ``foreign_algo_order``).
3. **Positions vs open intents.**  Reconciliation never leaves a position without a stop.
   - An open intent none of whose orders is live while protective orders of ours unknown to SQLite
     hold the symbol's position (on its closing side) is stale (``stale_intent``): SQLite is older
     than the exchange (a restored backup), the intent is closed and the position adopted below.
   - Every other open intent gets the bracket rules with the exchange's position
     (:mod:`coordinator.orders.brackets`): a position without a live stop gets a new stop and
     take-profit (``unprotected_position``), an intent whose exit fired has its other leg cancelled
     and is closed (``exit_incomplete``), one whose position is gone is closed
     (``position_closed_outside``); one still open with no position and no live order is closed
     (``stale_intent``).  A stop triggered more than ``trigger_grace_s`` ago but not filled
     (``stale_trigger``) is re-queried and, if still stuck, cancelled so a new one goes on.
   - A position that no open intent explains (after the above) is adopted when ``protect_orphans``
     is on (reported only otherwise): with the newest stop and take-profit of ours already working
     on it, kept as they are and written to SQLite (``adopted_position``: the orders' rows record
     what the exchange reports; a missing take-profit stays missing, a missing stop is placed at
     ``orphan_stop_fraction`` from the entry price), or else with an emergency stop at
     ``orphan_stop_fraction`` (``orphan_position``).
   - The protective orders of ours unknown to SQLite that no adoption took (``unknown_ours``) are
     cancelled when their symbol is flat, when they are on the wrong side, or when the position
     has its own live stop (duplicates); otherwise kept.
0. **Lasting conflicts** (``order_conflict``): orders the manager handed over after
   ``conflict_cap`` refused events in a row (:attr:`OrderManager.for_reconciliation`).  The
   venue keeps reporting something the transition table refuses, so no report is trusted: the
   refused event is reported, the order is left out of the monitor's queries, and its intent's
   bracket is re-checked against the exchange's position (rule 3 for that intent); a position in
   the intent's direction gets its missing stop and take-profit whatever the order's row says
   (:meth:`OrderManager.protect`), which is what protects the money.
   :meth:`Reconciler.resolve_conflicts` runs this rule alone while the coordinator runs (the
   monitor's sweep calls it).
4. **Executions without their fills** (``missing_fills``): an order, final or not, whose executed
   quantity is ahead of its recorded fills -- the process died between the order's reply and the
   stream's trade events -- gets its trades from ``userTrades``, so the fills (prices, fees,
   realised PnL) in SQLite are complete before any round trip is computed from them.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from coordinator.exchange.schemas import AlgoOrder
from coordinator.exchange.schemas import Order as WireOrder
from coordinator.orders.brackets import Action, ActionKind, exit_side, holds
from coordinator.orders.ids import is_ours
from coordinator.orders.manager import OrderManager
from coordinator.orders.models import IntentStatus, Order, OrderKind, OrderType
from coordinator.orders.monitor import net_positions
from coordinator.orders.states import EventKind, OrderState
from coordinator.side import Side

logger = logging.getLogger(__name__)

VenueLegs = dict[str, list[AlgoOrder]]
"""Protective orders of ours on the exchange that SQLite does not know, by symbol."""

DIFFERENCE_KINDS = (
    "order_conflict",
    "pending_never_sent",
    "stale_state",
    "not_found",
    "final_but_open",
    "foreign_order",
    "foreign_algo_order",
    "unknown_ours",
    "stale_trigger",
    "stale_intent",
    "unprotected_position",
    "position_closed_outside",
    "intent_finished",
    "exit_incomplete",
    "orphan_position",
    "adopted_position",
    "missing_fills",
)
"""Every ``Difference.kind`` the rules report (the metrics show each from 0)."""

PROTECTIVE_TYPES = {"STOP_MARKET": OrderKind.STOP_LOSS, "TAKE_PROFIT_MARKET": OrderKind.TAKE_PROFIT}


def protective_kind(algo: AlgoOrder) -> OrderKind | None:
    """The leg a ``closePosition`` stop or take-profit is (None for any other algo order)."""
    return PROTECTIVE_TYPES.get(algo.orderType) if algo.closePosition else None


def closing_legs(algos: Sequence[AlgoOrder], position: Decimal) -> list[AlgoOrder]:
    """The protective orders among ``algos`` on the side that closes ``position`` (signed)."""
    if position == 0:
        return []
    closing = (Side.BUY if position > 0 else Side.SELL).opposite.value
    return [a for a in algos if protective_kind(a) is not None and a.side == closing]


@dataclass(frozen=True, slots=True)
class Difference:
    """One report row: what differed and how it was resolved."""

    kind: str
    detail: str
    resolution: str
    symbol: str | None = None
    client_order_id: str | None = None
    exchange_id: str | None = None


@dataclass(slots=True)
class ReconciliationResult:
    run_id: int
    differences: list[Difference] = field(default_factory=list)

    def counts(self) -> Counter[str]:
        return Counter(d.kind for d in self.differences)

    def summary(self) -> str:
        counts = ", ".join(f"{k}={n}" for k, n in sorted(self.counts().items())) or "none"
        return f"reconciliation run {self.run_id}: {len(self.differences)} difference(s): {counts}"


class Reconciler:
    """Runs the rules in the module docstring against one manager (its client and store)."""

    def __init__(
        self,
        manager: OrderManager,
        *,
        trigger_grace_s: float = 60.0,
        protect_orphans: bool = True,
        orphan_stop_fraction: Decimal = Decimal("0.02"),
        symbols: Sequence[str] | None = None,
        requery_interval_s: float = 10.0,
    ) -> None:
        self.manager = manager
        self.requery_interval_s = requery_interval_s
        self.symbols = tuple(symbols) if symbols else None  # None: every symbol (weight 40 per list)
        self.trigger_grace_s = trigger_grace_s
        self.protect_orphans = protect_orphans
        self.orphan_stop_fraction = orphan_stop_fraction
        # Running totals by kind over every run of this process (``xylen_reconciliation_differences_total``).
        self.differences: Counter[str] = Counter(dict.fromkeys(DIFFERENCE_KINDS, 0))

    async def run(self) -> ReconciliationResult:
        """Reconcile once; returns the differences (also written to the report table)."""
        result, started = self._begin()
        await self._conflicts(result)
        await self._live_orders(result)
        legs = await self._open_orders(result)
        await self._positions(result, legs)
        await self._missing_fills(result)
        self._finish(result, started)
        return result

    async def resolve_conflicts(self) -> ReconciliationResult:
        """Rule 0 alone, for the orders handed over while running; a ``reconciliation_runs`` row."""
        result, started = self._begin()
        await self._conflicts(result)
        self._finish(result, started)
        return result

    def _begin(self) -> tuple[ReconciliationResult, int]:
        """A new ``reconciliation_runs`` row: its result to fill and the time it started."""
        started = self.manager.now_ms()
        conn = self.manager.store.connection
        run_id = conn.execute("INSERT INTO reconciliation_runs (started_ms) VALUES (?)", (started,)).lastrowid
        if run_id is None:
            raise RuntimeError("reconciliation_runs: the insert returned no row id")
        return ReconciliationResult(run_id), started

    def _finish(self, result: ReconciliationResult, started: int) -> None:
        conn = self.manager.store.connection
        run_id = result.run_id
        summary = result.summary()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO reconciliation_report (run_id, kind, symbol, client_order_id, exchange_id, detail,"
            " resolution, recorded_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (run_id, d.kind, d.symbol, d.client_order_id, d.exchange_id, d.detail, d.resolution, started)
                for d in result.differences
            ],
        )
        conn.execute(
            "UPDATE reconciliation_runs SET finished_ms = ?, differences = ?, summary = ? WHERE run_id = ?",
            (self.manager.now_ms(), len(result.differences), summary, run_id),
        )
        conn.execute("COMMIT")
        self.differences.update(result.counts())
        log = logger.warning if result.differences else logger.info
        log(summary)

    # -- rule 0 ---------------------------------------------------------------------------------
    async def _conflicts(self, result: ReconciliationResult) -> None:
        manager = self.manager
        store = manager.store
        handed = sorted(manager.for_reconciliation - manager.reconciled_conflicts)
        if not handed:
            return
        net = net_positions(await manager.client.get_open_positions())
        for cid in handed:
            manager.reconciled_conflicts.add(cid)
            order = store.get_order(cid)
            if order is None:
                continue
            refused = [e for e in store.events(cid, include_refused=True) if not e.applied]
            last = refused[-1].error if refused else "no refused event stored"
            position = net.get(order.symbol, Decimal(0))
            done = [a.kind.value for a in await manager.ensure_bracket(order.intent_id, position)]
            intent = store.get_intent(order.intent_id)
            if intent is not None and holds(intent.side, position):  # exposure SQLite cannot explain
                done += [kind.value for kind in await manager.protect(intent.intent_id)]
            result.differences.append(
                Difference(
                    "order_conflict",
                    f"{order.state.value} in SQLite; {len(refused)} refused report(s), last: {last}",
                    f"no more re-queries; intent {order.intent_id} checked against the position"
                    f" {position}: {', '.join(done) or 'bracket in place'}",
                    symbol=order.symbol,
                    client_order_id=cid,
                )
            )

    # -- rule 1 ---------------------------------------------------------------------------------
    async def _live_orders(self, result: ReconciliationResult) -> None:
        manager = self.manager
        missing: list[Order] = []
        for order in manager.store.live_orders():
            diff = dict(symbol=order.symbol, client_order_id=order.client_order_id)
            if order.state is OrderState.PENDING:
                manager.record_local(order, EventKind.REJECT_LOCAL, "never sent (PENDING at restart)")
                result.differences.append(
                    Difference("pending_never_sent", "PENDING at restart", "REJECT_LOCAL", **diff)
                )
                continue
            after = await manager.query(order)
            if after.state is OrderState.UNKNOWN:
                missing.append(order)
            elif after.state is not order.state:
                result.differences.append(
                    Difference(
                        "stale_state",
                        f"{order.state.value} in SQLite",
                        f"recorded {after.state.value}",
                        **diff,
                    )
                )
        # Not found: the process that sent them is gone, so nothing of ours is still in flight.
        # Query again, spaced by the poll interval, until found or declared lost; the bracket rules
        # then re-place a protective leg that never reached the exchange.
        pending = list(missing)
        for _ in range(manager.tracker.lost_after):
            if not pending:
                break
            await asyncio.sleep(self.requery_interval_s)
            pending = [o for o in pending if (await manager.query(manager.current(o.client_order_id))).state
                       is OrderState.UNKNOWN]  # fmt: skip
        for order in missing:
            after = manager.current(order.client_order_id)
            result.differences.append(
                Difference("not_found", f"{order.state.value} in SQLite, not on the exchange",
                           f"recorded {after.state.value} after {after.not_found_count} not-found replies",
                           symbol=order.symbol, client_order_id=order.client_order_id)
            )  # fmt: skip

    # -- rule 2 ---------------------------------------------------------------------------------
    async def _open_orders(self, result: ReconciliationResult) -> VenueLegs:
        """Rule 2; returns the protective orders of ours SQLite does not know, by symbol (rule 3's)."""
        manager = self.manager
        client = manager.client
        legs: VenueLegs = {}
        for symbol in self.symbols or (None,):
            for wire in await client.get_open_orders(symbol):
                await self._open_one(result, wire.symbol, wire.clientOrderId, str(wire.orderId), wire, False)
            for algo in await client.get_open_algo_orders(symbol):
                found = await self._open_one(
                    result, algo.symbol, algo.clientAlgoId, str(algo.algoId), algo, True
                )
                if found:
                    legs.setdefault(algo.symbol, []).append(algo)
        return legs

    async def _open_one(
        self,
        result: ReconciliationResult,
        symbol: str,
        cid: str,
        exchange_id: str,
        wire: WireOrder | AlgoOrder,
        algo: bool,
    ) -> bool:
        """One open order of the exchange; True for a protective order of ours unknown to SQLite,
        which is left for rule 3 to adopt, keep or cancel once the positions are known."""
        manager = self.manager
        store = manager.store
        local = store.get_order(cid) or store.find_by_exchange_id(
            symbol, exchange_id, id_kind="algo" if algo else "order"
        )
        ids = dict(symbol=symbol, client_order_id=cid, exchange_id=exchange_id)
        what = "algo order" if algo else "order"
        if local is not None:
            if local.is_final:
                after = await manager.query(local)
                result.differences.append(
                    Difference(
                        "final_but_open",
                        f"{local.state.value} in SQLite, open on the exchange",
                        f"re-queried: {after.state.value}",
                        **ids,
                    )
                )
            return False
        if not is_ours(cid):
            result.differences.append(
                Difference(
                    "foreign_algo_order" if algo else "foreign_order",
                    f"{what} not placed by us: {wire.model_dump_json()}",
                    "reported, left alone",
                    **ids,
                )
            )
            return False
        if isinstance(wire, AlgoOrder) and protective_kind(wire) is not None:
            return True
        resolution = await self._cancel_unknown(symbol, exchange_id, algo)
        result.differences.append(
            Difference("unknown_ours", f"{what} with our prefix missing from SQLite", resolution, **ids)
        )
        return False

    async def _cancel_unknown(self, symbol: str, exchange_id: str, algo: bool) -> str:
        try:
            if algo:
                await self.manager.client.cancel_algo_order(algo_id=int(exchange_id))
            else:
                await self.manager.client.cancel_order(symbol, order_id=int(exchange_id))
        except Exception as exc:  # reported either way; the next start tries again
            return f"cancel failed: {exc}"
        return "cancelled"

    # -- rule 3 ---------------------------------------------------------------------------------
    async def _positions(self, result: ReconciliationResult, legs: VenueLegs) -> None:
        manager = self.manager
        store = manager.store
        now = manager.now_ms()
        for order in store.live_orders():
            if order.triggered_ms is not None and now - order.triggered_ms > self.trigger_grace_s * 1000:
                after = await manager.query(order)
                if not after.is_final:
                    after = await manager.cancel(order.client_order_id)
                result.differences.append(
                    Difference(
                        "stale_trigger",
                        "triggered long ago, not filled: unprotected",
                        f"re-queried, now {after.state.value}",
                        symbol=order.symbol,
                        client_order_id=order.client_order_id,
                    )
                )
        positions = await manager.client.get_open_positions()
        net = net_positions(positions)
        covered: set[str] = set()  # symbols whose position an open intent of SQLite explains
        for intent in store.open_intents():
            position = net.get(intent.symbol, Decimal(0))
            holding = closing_legs(legs.get(intent.symbol, []), position)
            live = [o for o in store.orders_of_intent(intent.intent_id) if not o.is_final]
            if holding and not live:
                store.set_intent_status(intent.intent_id, IntentStatus.CLOSED)
                result.differences.append(
                    Difference(
                        "stale_intent",
                        f"intent {intent.intent_id} ({intent.side.value}) open in SQLite, none of its orders"
                        f" live on the exchange; the position {position} is held by our protective"
                        f" order(s) {', '.join(a.clientAlgoId for a in holding)} missing from SQLite"
                        " (a restored backup, or another copy of this database)",
                        "intent closed; the position is adopted with those orders",
                        symbol=intent.symbol,
                    )
                )
                continue
            actions = await manager.ensure_bracket(intent.intent_id, position)
            self._bracket_difference(result, intent.intent_id, intent.symbol, position, actions)
            now_intent = store.get_intent(intent.intent_id)
            if now_intent is None or now_intent.status is not IntentStatus.OPEN:
                continue
            if position == 0 and all(o.is_final for o in store.orders_of_intent(intent.intent_id)):
                store.set_intent_status(intent.intent_id, IntentStatus.CLOSED)
                result.differences.append(
                    Difference(
                        "stale_intent",
                        f"intent {intent.intent_id} open in SQLite; no position and no live order on the"
                        " exchange",
                        "intent closed",
                        symbol=intent.symbol,
                    )
                )
                continue
            covered.add(intent.symbol)
        for symbol, amount in sorted(net.items()):
            if symbol not in covered and amount != 0:
                covered.add(symbol)
                entry = next(p.entryPrice for p in positions if p.symbol == symbol and p.positionAmt != 0)
                result.differences.append(await self._orphan(symbol, amount, entry, legs.get(symbol, [])))
        for symbol, unknown in sorted(legs.items()):
            for algo in unknown:
                result.differences.append(await self._leftover(symbol, algo, net.get(symbol, Decimal(0))))

    def _bracket_difference(
        self,
        result: ReconciliationResult,
        intent_id: str,
        symbol: str,
        position: Decimal,
        actions: Sequence[Action],
    ) -> None:
        """The report row of one intent's bracket rules (nothing when all was in place)."""
        store = self.manager.store
        kinds = {a.kind for a in actions}
        if ActionKind.PLACE_STOP in kinds or ActionKind.PLACE_TAKE_PROFIT in kinds:
            legs = [
                o
                for o in store.orders_of_intent(intent_id)
                if not o.is_final and o.kind in (OrderKind.STOP_LOSS, OrderKind.TAKE_PROFIT)
            ]
            result.differences.append(
                Difference(
                    "unprotected_position",
                    f"position {position} without its legs",
                    "placed: " + ", ".join(f"{o.kind.value} {o.state.value}" for o in legs),
                    symbol=symbol,
                )
            )
        elif ActionKind.CLOSE_INTENT in kinds:
            flat = any("flat" in a.reason for a in actions)
            result.differences.append(
                Difference(
                    "position_closed_outside" if flat else "intent_finished",
                    f"intent {intent_id}: " + "; ".join(a.reason for a in actions),
                    "intent closed",
                    symbol=symbol,
                )
            )
        elif actions:
            result.differences.append(
                Difference(
                    "exit_incomplete",
                    "; ".join(a.reason for a in actions),
                    f"{len(actions)} order(s) cancelled",
                    symbol=symbol,
                )
            )

    async def _orphan(
        self, symbol: str, amount: Decimal, entry_price: Decimal, unknown: list[AlgoOrder]
    ) -> Difference:
        """A position no open intent explains: adopted with the protective orders of ours already
        working on it (kept, not replaced), else with an emergency stop."""
        detail = f"position {amount} at {entry_price} with no open intent"
        holding = closing_legs(unknown, amount)
        if not self.protect_orphans:
            return Difference("orphan_position", detail, "reported", symbol=symbol)
        if holding:
            return await self._adopt(symbol, amount, entry_price, holding, unknown)
        manager = self.manager
        side = Side.BUY if amount > 0 else Side.SELL
        stop = self._emergency_stop(symbol, side, entry_price)
        intent, leg = manager.store.create_intent_with_order(
            symbol,
            side,
            abs(amount),
            stop_price=stop,
            kind=OrderKind.STOP_LOSS,
            order_side=exit_side(side),
            type=OrderType.STOP_MARKET,
            order_qty=None,
            trigger_price=stop,
            close_position=True,
        )
        reason = await manager.submit(leg)
        if reason:
            await manager.close_position(intent.intent_id, abs(amount))
        state = manager.current(leg.client_order_id).state.value
        return Difference(
            "orphan_position",
            detail,
            f"adopted as intent {intent.intent_id}; emergency stop at {stop}: {state}"
            + (f" ({reason}; closing at market)" if reason else ""),
            symbol=symbol,
        )

    def _emergency_stop(self, symbol: str, side: Side, entry_price: Decimal) -> Decimal:
        sign = -1 if side is Side.BUY else 1
        return self.manager.client.symbol_rules(symbol).round_trigger(
            entry_price * (1 + sign * self.orphan_stop_fraction)
        )

    async def _adopt(
        self,
        symbol: str,
        amount: Decimal,
        entry_price: Decimal,
        holding: list[AlgoOrder],
        unknown: list[AlgoOrder],
    ) -> Difference:
        """Adopt the position with the newest stop and take-profit of ours that hold it; the rest of
        ``holding`` stays in ``unknown`` (duplicates, cancelled by :meth:`_leftover`)."""
        manager = self.manager
        side = Side.BUY if amount > 0 else Side.SELL
        chosen: dict[OrderKind, AlgoOrder] = {}
        for algo in sorted(holding, key=lambda a: (a.updateTime, a.algoId)):
            kind = protective_kind(algo)
            if kind is None:
                raise RuntimeError(f"algo order {algo.algoId} is not protective")
            chosen[kind] = algo
        stop, take = chosen.get(OrderKind.STOP_LOSS), chosen.get(OrderKind.TAKE_PROFIT)
        stop_price = (
            stop.triggerPrice if stop is not None else self._emergency_stop(symbol, side, entry_price)
        )
        intent, orders = manager.store.adopt(
            symbol,
            side,
            abs(amount),
            [(a.clientAlgoId, kind, a.triggerPrice or Decimal(0)) for kind, a in chosen.items()],
            stop_price=stop_price,
            take_profit_price=take.triggerPrice if take is not None else None,
        )
        for algo in chosen.values():
            unknown.remove(algo)
        states = []
        for order in orders:
            manager.record_local(order, EventKind.SEND, "adopted: already working on the exchange")
            after = await manager.query(manager.current(order.client_order_id))
            states.append(f"{after.kind.value} {after.client_order_id} {after.state.value}")
        actions = await manager.ensure_bracket(intent.intent_id, amount)  # a missing leg is placed
        placed = [a.kind.value for a in actions]
        return Difference(
            "adopted_position",
            f"position {amount} at {entry_price} with no open intent, held by our protective order(s)"
            " missing from SQLite",
            f"adopted as intent {intent.intent_id} with the exchange's "
            + ", ".join(states)
            + (f"; {', '.join(placed)}" if placed else ""),
            symbol=symbol,
        )

    async def _leftover(self, symbol: str, algo: AlgoOrder, position: Decimal) -> Difference:
        """A protective order of ours unknown to SQLite that no adoption took: cancelled when the
        position needs no more protection (flat, the other direction, or its own stop is live),
        kept otherwise."""
        store = self.manager.store
        ids = dict(symbol=symbol, client_order_id=algo.clientAlgoId, exchange_id=str(algo.algoId))
        detail = f"protective {algo.orderType} {algo.side} with our prefix missing from SQLite"
        protected = any(
            o.kind is OrderKind.STOP_LOSS and not o.is_final
            for i in store.open_intents()
            if i.symbol == symbol
            for o in store.orders_of_intent(i.intent_id)
        )
        if closing_legs([algo], position) and not protected:
            return Difference(
                "unknown_ours", detail, "kept: it protects a position SQLite does not hold", **ids
            )
        why = (
            "position flat"
            if position == 0
            else ("duplicate" if closing_legs([algo], position) else "wrong side")
        )
        resolution = await self._cancel_unknown(symbol, str(algo.algoId), True)
        return Difference("unknown_ours", f"{detail} ({why})", resolution, **ids)

    # -- rule 4 ---------------------------------------------------------------------------------
    async def _missing_fills(self, result: ReconciliationResult) -> None:
        manager = self.manager
        for order in manager.store.orders_missing_fills():
            before = order.filled_qty_from_fills
            await manager.backfill_fills(order)
            after = manager.current(order.client_order_id).filled_qty_from_fills
            result.differences.append(
                Difference(
                    "missing_fills",
                    f"executed {order.executed_qty}, fills for {before}",
                    f"fills for {after} from userTrades" if after > before else "trades not fetched",
                    order.symbol,
                    order.client_order_id,
                    order.exchange_order_id,
                )
            )
