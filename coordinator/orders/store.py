"""``OrderStore``: intents, orders, their events and fills in SQLite. Persist first, act after.

Every change goes through :meth:`OrderStore.record`, which in ONE transaction appends the event to
``order_events`` (with its source and the raw venue payload), applies it with
:func:`~coordinator.orders.machine.apply`, inserts a new fill and writes the resulting order row.
When it returns, the event and its consequence are on disk (``synchronous=FULL``: fsynced); only
then may the caller act on it.  An event the machine refuses is still appended (``applied = 0``
with the error) and the :class:`~coordinator.orders.machine.IllegalTransition` is re-raised, so
nothing the venue said is lost.  The order row always equals the replay of its applied events
(:meth:`OrderStore.replay`).  A report that contradicts a final state is written as two applied
rows: the ``CORRECTION`` local event (``final -> UNKNOWN``), then the report; the same transaction
reopens the order's intent (``OPEN``), so the position the venue reveals is looked after even if
the process dies right after.

:meth:`OrderStore.create_order` writes the order ``PENDING`` with a deterministic client id
before anything is sent, and refuses (:class:`LiveOrderExists`) while another order of the same
intent and leg is not final; an ``UNKNOWN`` order is not final, so a second entry is never created
while the first may exist.  Single writer per file; not thread-safe.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from coordinator.orders import ids
from coordinator.orders.events import Event, Fill, event_from_json, event_to_json, event_type
from coordinator.orders.machine import IllegalTransition, InconsistentEvent, Transition, apply
from coordinator.orders.models import Intent, IntentStatus, Order, OrderKind, OrderType
from coordinator.orders.states import FINAL_STATES, EventKind, OrderState
from coordinator.orders.store_rows import (
    Bracket,
    StoredEvent,
    dec_text,
    fill_from_row,
    intent_from_row,
    order_from_row,
)
from coordinator.side import Side
from coordinator.storage.db import Synchronous, init_db
from xylen.timeutil import wall_ms


class LiveOrderExists(Exception):
    """The intent already has an order for this leg that is not final (it may exist on the venue)."""


class UnknownOrder(KeyError):
    """No order with this client id (the event is not about one of our orders)."""


# the states that are not final, listed (``state IN`` uses the index on state; ``NOT IN`` scans every order)
_LIVE_SQL = ", ".join(
    f"'{state.value}'" for state in sorted(set(OrderState) - FINAL_STATES, key=lambda s: s.value)
)


class OrderStore:
    """Persistence of intents and orders over one SQLite connection from :func:`init_db`."""

    def __init__(self, conn: sqlite3.Connection, *, now_ms: Callable[[], int] = wall_ms) -> None:
        self._conn = conn
        self._now_ms = now_ms

    @classmethod
    def open(
        cls, path: str | Path, *, synchronous: Synchronous = "FULL", now_ms: Callable[[], int] = wall_ms
    ) -> OrderStore:
        """Open (and migrate) the database at ``path``."""
        return cls(init_db(path, synchronous=synchronous), now_ms=now_ms)

    def close(self) -> None:
        self._conn.close()

    @property
    def connection(self) -> sqlite3.Connection:
        return self._conn

    @contextmanager
    def _tx(self) -> Iterator[None]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        cursor = self._conn.cursor()
        cursor.row_factory = sqlite3.Row
        return cursor.execute(sql, params).fetchall()

    # --- intents

    def create_intent(
        self,
        symbol: str,
        side: Side,
        qty: Decimal,
        *,
        stop_price: Decimal | None = None,
        take_profit_price: Decimal | None = None,
        intent_id: str | None = None,
    ) -> Intent:
        """Write a new ``OPEN`` intent and return it (its id is generated unless given).

        An intent alone never reaches the exchange: trading code writes an intent together with
        its first order (:meth:`create_intent_with_entry`, :meth:`create_intent_with_order`).
        """
        with self._tx():
            return self._insert_intent(symbol, side, qty, stop_price, take_profit_price, intent_id)

    def create_intent_with_entry(
        self,
        symbol: str,
        side: Side,
        qty: Decimal,
        *,
        type: OrderType,
        price: Decimal | None = None,
        stop_price: Decimal | None = None,
        take_profit_price: Decimal | None = None,
    ) -> tuple[Intent, Order]:
        """Write an ``OPEN`` intent and its ``PENDING`` entry in ONE transaction; return both."""
        return self.create_intent_with_order(
            symbol, side, qty, kind=OrderKind.ENTRY, order_side=side, type=type, order_qty=qty, price=price,
            stop_price=stop_price, take_profit_price=take_profit_price,
        )  # fmt: skip

    def create_intent_with_order(
        self,
        symbol: str,
        side: Side,
        qty: Decimal,
        *,
        kind: OrderKind,
        order_side: Side,
        type: OrderType,
        order_qty: Decimal | None,
        price: Decimal | None = None,
        trigger_price: Decimal | None = None,
        close_position: bool = False,
        stop_price: Decimal | None = None,
        take_profit_price: Decimal | None = None,
    ) -> tuple[Intent, Order]:
        """An ``OPEN`` intent and its first order (``PENDING``) in one transaction: never one alone."""
        with self._tx():
            intent = self._insert_intent(symbol, side, qty, stop_price, take_profit_price, None)
            order = self._insert_order(
                intent, kind, side=order_side, type=type, qty=order_qty, price=price,
                trigger_price=trigger_price, reduce_only=False, close_position=close_position, parent_id=None,
            )  # fmt: skip
        return intent, order

    def adopt(
        self,
        symbol: str,
        side: Side,
        qty: Decimal,
        legs: Sequence[tuple[str, OrderKind, Decimal]],
        *,
        stop_price: Decimal | None = None,
        take_profit_price: Decimal | None = None,
    ) -> tuple[Intent, list[Order]]:
        """A new ``OPEN`` intent for a position found on the exchange, with the protective orders
        already working there (``(client id, leg, trigger price)``: ``closePosition`` algo orders on
        the closing side), in one transaction.  The orders are written ``PENDING``; the caller
        records what the exchange reports for them.
        """
        with self._tx():
            intent = self._insert_intent(symbol, side, qty, stop_price, take_profit_price, None)
            orders = []
            for cid, kind, trigger in legs:
                stop = kind is OrderKind.STOP_LOSS
                orders.append(self._insert_order(
                    intent, kind, side=side.opposite,
                    type=OrderType.STOP_MARKET if stop else OrderType.TAKE_PROFIT_MARKET,
                    qty=None, price=None, trigger_price=trigger, reduce_only=False, close_position=True,
                    parent_id=None, client_order_id=cid,
                ))  # fmt: skip
        return intent, orders

    def _insert_intent(
        self,
        symbol: str,
        side: Side,
        qty: Decimal,
        stop_price: Decimal | None,
        take_profit_price: Decimal | None,
        intent_id: str | None,
    ) -> Intent:
        if qty <= 0:
            raise ValueError(f"qty must be > 0, got {qty}")
        now = self._now_ms()
        intent = Intent(
            intent_id=intent_id or ids.new_intent_id(now),
            symbol=symbol,
            side=Side(side),
            qty=qty,
            created_ms=now,
            stop_price=stop_price,
            take_profit_price=take_profit_price,
        )
        self._conn.execute(
            "INSERT INTO intents VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (intent.intent_id, symbol, intent.side.value, str(qty), dec_text(stop_price),
             dec_text(take_profit_price), intent.status.value, now, now),
        )  # fmt: skip
        return intent

    def set_intent_status(self, intent_id: str, status: IntentStatus) -> Intent:
        """Change an intent's status; return the intent."""
        with self._tx():
            cursor = self._conn.execute(
                "UPDATE intents SET status = ?, updated_ms = ? WHERE intent_id = ?",
                (IntentStatus(status).value, self._now_ms(), intent_id),
            )
            if cursor.rowcount != 1:
                raise KeyError(intent_id)
        intent = self.get_intent(intent_id)
        if intent is None:
            raise KeyError(intent_id)
        return intent

    def get_intent(self, intent_id: str) -> Intent | None:
        rows = self._rows("SELECT * FROM intents WHERE intent_id = ?", (intent_id,))
        return intent_from_row(rows[0]) if rows else None

    def open_intents(self) -> list[Intent]:
        rows = self._rows("SELECT * FROM intents WHERE status = 'OPEN' ORDER BY created_ms, intent_id")
        return [intent_from_row(row) for row in rows]

    # --- orders

    def create_order(
        self,
        intent_id: str,
        kind: OrderKind,
        *,
        side: Side,
        type: OrderType,
        qty: Decimal | None,
        price: Decimal | None = None,
        trigger_price: Decimal | None = None,
        reduce_only: bool = False,
        close_position: bool = False,
        parent_id: str | None = None,
    ) -> Order:
        """Write the next attempt of the ``kind`` leg of an open intent as ``PENDING``; return it.

        Raises :class:`LiveOrderExists` while an order of that intent and leg is not final
        (``UNKNOWN`` included), ``KeyError`` for an unknown intent and ``ValueError`` for one
        that is not open.
        """
        with self._tx():
            intent = self.get_intent(intent_id)
            if intent is None:
                raise KeyError(intent_id)
            if intent.status is not IntentStatus.OPEN:
                raise ValueError(f"intent {intent_id} is {intent.status.value}")
            return self._insert_order(
                intent, kind, side=side, type=type, qty=qty, price=price, trigger_price=trigger_price,
                reduce_only=reduce_only, close_position=close_position, parent_id=parent_id,
            )  # fmt: skip

    def _insert_order(
        self,
        intent: Intent,
        kind: OrderKind,
        *,
        side: Side,
        type: OrderType,
        qty: Decimal | None,
        price: Decimal | None,
        trigger_price: Decimal | None,
        reduce_only: bool,
        close_position: bool,
        parent_id: str | None,
        client_order_id: str | None = None,
    ) -> Order:
        """Insert the next attempt of a leg (inside a transaction; see :meth:`create_order`).

        ``client_order_id``: the id of an order already on the exchange that this row adopts
        (:meth:`adopt`); by default the id is derived from the intent, the leg and the attempt.
        """
        intent_id = intent.intent_id
        kind = OrderKind(kind)
        rows = self._rows(
            "SELECT client_order_id, state, attempt FROM orders WHERE intent_id = ? AND kind = ?",
            (intent_id, kind.value),
        )
        live = [row["client_order_id"] for row in rows if OrderState(row["state"]) not in FINAL_STATES]
        if live:
            raise LiveOrderExists(f"intent {intent_id} has a live {kind.value} order: {', '.join(live)}")
        attempt = max((int(row["attempt"]) for row in rows), default=0) + 1
        now = self._now_ms()
        order = Order(
            client_order_id=client_order_id or ids.client_order_id(intent_id, kind, attempt),
            intent_id=intent_id,
            kind=kind,
            attempt=attempt,
            symbol=intent.symbol,
            side=Side(side),
            type=OrderType(type),
            qty=qty,
            created_ms=now,
            price=price,
            trigger_price=trigger_price,
            reduce_only=reduce_only,
            close_position=close_position,
            parent_id=parent_id,
            updated_ms=now,
        )
        self._conn.execute(
            "INSERT INTO orders (client_order_id, intent_id, kind, attempt, symbol, side, type, qty,"
            " price, trigger_price, reduce_only, close_position, parent_id, created_ms, state,"
            " executed_qty, venue_executed_qty, not_found_count, updated_ms)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '0', '0', 0, ?)",
            (order.client_order_id, intent_id, kind.value, attempt, order.symbol, order.side.value,
             order.type.value, dec_text(qty), dec_text(price), dec_text(trigger_price), int(reduce_only),
             int(close_position), parent_id, now, order.state.value, now),
        )  # fmt: skip
        return order

    def record(self, event: Event, raw: object = None) -> Transition:
        """Persist ``event`` and the order it produces in one transaction; return the transition.

        ``raw`` is the venue payload (a JSON-serialisable value or a JSON string), kept for audit.
        Raises :class:`UnknownOrder` (nothing written) when the client id is not ours, and
        :class:`IllegalTransition` after appending the refused event (``applied = 0``).
        """
        raw_text = raw if isinstance(raw, str) or raw is None else json.dumps(raw, default=str)
        refused: IllegalTransition | None = None
        with self._tx():
            order = self._load(event.client_order_id)
            if order is None:
                raise UnknownOrder(event.client_order_id)
            try:
                if isinstance(event, Fill):
                    self._check_trade_owner(order, event)
                transition = apply(order, event)
            except IllegalTransition as exc:
                refused = exc
                self._append(order, event, raw_text, exc.kind, order.state, applied=False, error=str(exc))
            else:
                before = order
                if transition.correction is not None:  # the CORRECTION move is a row of its own
                    step = transition.correction
                    self._append(order, step.event, None, step.kind, step.after, applied=True)
                    before = step.order
                seq = self._append(
                    before, event, raw_text, transition.kind, transition.after,
                    applied=True, duplicate=transition.duplicate,
                )  # fmt: skip
                if transition.new_fill is not None:
                    self._insert_fill(transition.order, transition.new_fill, seq)
                self._write_state(transition.order, seq)
                if transition.correction is not None:  # the venue's truth may mean exposure: watch it
                    self._conn.execute(
                        "UPDATE intents SET status = 'OPEN', updated_ms = ? WHERE intent_id = ?"
                        " AND status != 'OPEN'",
                        (self._now_ms(), order.intent_id),
                    )
        if refused is not None:
            raise refused
        return transition

    def _check_trade_owner(self, order: Order, fill: Fill) -> None:
        rows = self._rows(
            "SELECT client_order_id FROM fills WHERE symbol = ? AND trade_id = ?",
            (order.symbol, fill.trade_id),
        )
        if rows and rows[0]["client_order_id"] != order.client_order_id:
            raise InconsistentEvent(
                order, None, f"trade {fill.trade_id} belongs to {rows[0]['client_order_id']}"
            )

    def _append(
        self,
        order: Order,
        event: Event,
        raw: str | None,
        kind: EventKind | None,
        after: OrderState,
        *,
        applied: bool,
        duplicate: bool = False,
        error: str | None = None,
    ) -> int:
        cursor = self._conn.execute(
            "INSERT INTO order_events (client_order_id, event_type, kind, source, event, raw, state_before,"
            " state_after, applied, duplicate, error, event_ms, recorded_ms)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (order.client_order_id, event_type(event), None if kind is None else kind.value, event.source,
             event_to_json(event), raw, order.state.value, after.value, int(applied), int(duplicate), error,
             event.time_ms, self._now_ms()),
        )  # fmt: skip
        if cursor.lastrowid is None:
            raise RuntimeError("order_events: the insert returned no row id")
        return cursor.lastrowid

    def _insert_fill(self, order: Order, fill: Fill, seq: int) -> None:
        self._conn.execute(
            "INSERT INTO fills VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (order.symbol, fill.trade_id, order.client_order_id, fill.exchange_order_id, str(fill.qty),
             str(fill.price), str(fill.commission), fill.commission_asset, str(fill.realized_pnl),
             int(fill.maker), fill.time_ms, fill.source, seq),
        )  # fmt: skip

    def _write_state(self, order: Order, seq: int) -> None:
        self._conn.execute(
            "UPDATE orders SET state = ?, exchange_order_id = ?, algo_id = ?, executed_qty = ?,"
            " venue_executed_qty = ?, avg_price = ?, not_found_count = ?, triggered_ms = ?, updated_ms = ?,"
            " last_seq = ? WHERE client_order_id = ?",
            (order.state.value, order.exchange_order_id, order.algo_id, str(order.executed_qty),
             str(order.venue_executed_qty), dec_text(order.avg_price), order.not_found_count,
             order.triggered_ms, order.updated_ms, seq, order.client_order_id),
        )  # fmt: skip

    def _load(self, client_order_id: str) -> Order | None:
        rows = self._rows("SELECT * FROM orders WHERE client_order_id = ?", (client_order_id,))
        return self._orders(rows)[0] if rows else None

    def _orders(self, rows: list[sqlite3.Row]) -> list[Order]:
        if not rows:
            return []
        ids_ = [row["client_order_id"] for row in rows]
        fills: dict[str, list[Fill]] = {cid: [] for cid in ids_}
        for start in range(0, len(ids_), 500):
            chunk = ids_[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            for row in self._rows(
                f"SELECT * FROM fills WHERE client_order_id IN ({marks})"  # nosec B608 # only ? marks
                " ORDER BY seq",
                tuple(chunk),
            ):
                fills[row["client_order_id"]].append(fill_from_row(row))
        return [order_from_row(row, tuple(fills[row["client_order_id"]])) for row in rows]

    # --- queries

    def get_order(self, client_order_id: str) -> Order | None:
        return self._load(client_order_id)

    def find_by_exchange_id(
        self, symbol: str, exchange_id: str, *, id_kind: Literal["any", "order", "algo"] = "any"
    ) -> Order | None:
        """The order with this ``orderId`` (or triggered order id) or ``algoId`` on ``symbol``.

        ``orderId`` and ``algoId`` are separate counters on the venue (order 2 and algo order 2
        can both exist), so ``id_kind="order"`` / ``"algo"`` looks in one of them only.
        """
        where = {
            "any": "(exchange_order_id = ? OR algo_id = ?)",
            "order": "exchange_order_id = ?",
            "algo": "algo_id = ?",
        }[id_kind]
        params = (symbol, exchange_id, exchange_id) if id_kind == "any" else (symbol, exchange_id)
        sql = f"SELECT * FROM orders WHERE symbol = ? AND {where}"  # nosec B608 # constant clauses
        rows = self._rows(sql, params)
        return self._orders(rows[:1])[0] if rows else None

    def live_orders(self) -> list[Order]:
        """Every order not in a final state (what reconciliation queries at start), oldest first."""
        rows = self._rows(
            f"SELECT * FROM orders WHERE state IN ({_LIVE_SQL})"  # nosec B608 # constant states
            " ORDER BY created_ms, rowid"
        )
        return self._orders(rows)

    def orders_missing_fills(self) -> list[Order]:
        """Orders, final or not, whose executed quantity is ahead of their recorded fills (their
        trades' stream events were never seen), oldest first.  The SQL filter is a float
        pre-selection; :meth:`OrderManager.backfill_fills` compares exactly."""
        rows = self._rows(
            "SELECT o.* FROM orders o LEFT JOIN fills f USING (client_order_id)"
            " WHERE CAST(o.executed_qty AS REAL) > 0 GROUP BY o.client_order_id"
            " HAVING MAX(CAST(o.executed_qty AS REAL)) > COALESCE(SUM(CAST(f.qty AS REAL)), 0) * (1 + 1e-9)"
            " ORDER BY o.created_ms, o.rowid"
        )
        return self._orders(rows)

    def all_orders(self) -> list[Order]:
        return self._orders(self._rows("SELECT * FROM orders ORDER BY created_ms, rowid"))

    def orders_of_intent(self, intent_id: str) -> list[Order]:
        rows = self._rows("SELECT * FROM orders WHERE intent_id = ? ORDER BY created_ms, rowid", (intent_id,))
        return self._orders(rows)

    def open_brackets(self) -> list[Bracket]:
        """Open intents whose latest entry has executed quantity, with their latest other legs."""
        brackets = []
        for intent in self.open_intents():
            latest: dict[OrderKind, Order] = {}
            for order in self.orders_of_intent(intent.intent_id):
                if order.kind not in latest or order.attempt > latest[order.kind].attempt:
                    latest[order.kind] = order
            entry = latest.get(OrderKind.ENTRY)
            if entry is not None and entry.executed_qty > 0:
                brackets.append(
                    Bracket(intent, entry, latest.get(OrderKind.STOP_LOSS), latest.get(OrderKind.TAKE_PROFIT),
                            latest.get(OrderKind.CLOSE))
                )  # fmt: skip
        return brackets

    def events(self, client_order_id: str, *, include_refused: bool = False) -> list[StoredEvent]:
        """The order's ``order_events`` rows in the order they were recorded."""
        where = "" if include_refused else " AND applied = 1"
        rows = self._rows(
            f"SELECT * FROM order_events WHERE client_order_id = ?{where}"  # nosec B608 # constant clause
            " ORDER BY seq",
            (client_order_id,),
        )
        return [
            StoredEvent(
                seq=row["seq"],
                client_order_id=row["client_order_id"],
                kind=None if row["kind"] is None else EventKind(row["kind"]),
                event=event_from_json(row["event"]),
                raw=row["raw"],
                state_before=OrderState(row["state_before"]),
                state_after=OrderState(row["state_after"]),
                applied=bool(row["applied"]),
                duplicate=bool(row["duplicate"]),
                error=row["error"],
                recorded_ms=row["recorded_ms"],
            )
            for row in rows
        ]

    def replay(self, client_order_id: str) -> Order:
        """The order rebuilt from its creation and its applied events (equals the stored row)."""
        order = self._load(client_order_id)
        if order is None:
            raise UnknownOrder(client_order_id)
        current = order.as_created()
        for stored in self.events(client_order_id):
            current = apply(current, stored.event).order
        return current
