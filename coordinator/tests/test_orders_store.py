"""OrderStore and migrations: persist first, one live order per leg, replay equals the stored row."""

from __future__ import annotations

import json
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

from coordinator.orders import (
    EventKind,
    Fill,
    IllegalTransition,
    IntentStatus,
    LiveOrderExists,
    LocalEvent,
    OrderKind,
    OrderState,
    OrderStore,
    OrderType,
    OrderUpdate,
    OverfillError,
    Side,
    UnknownOrder,
    VenueStatus,
)
from coordinator.storage import MIGRATIONS_DIR, init_db, latest_version, migrate


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000_000

    def __call__(self) -> int:
        self.now += 1
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> OrderStore:
    return OrderStore.open(tmp_path / "xylen.db", now_ms=Clock())


def _entry(store: OrderStore, qty: str = "0.010") -> tuple[str, str]:
    intent = store.create_intent("BTCUSDT", Side.BUY, Decimal(qty), stop_price=Decimal("41000"))
    order = store.create_order(
        intent.intent_id, OrderKind.ENTRY, side=Side.BUY, type=OrderType.MARKET, qty=Decimal(qty)
    )
    return intent.intent_id, order.client_order_id


# --- migrations


def test_migration_from_empty_to_latest_and_rerun_is_a_no_op(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    conn = init_db(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == latest_version() >= 1
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"intents", "orders", "order_events", "fills"} <= tables
    schema = list(conn.execute("SELECT sql FROM sqlite_master ORDER BY name"))
    assert migrate(conn) == 0
    conn.close()
    again = init_db(path, synchronous="NORMAL")
    assert list(again.execute("SELECT sql FROM sqlite_master ORDER BY name")) == schema
    assert again.execute("PRAGMA synchronous").fetchone()[0] == 1
    again.close()


def test_migrations_apply_in_order_and_a_failure_rolls_back(tmp_path: Path) -> None:
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    for source in MIGRATIONS_DIR.glob("*.sql"):
        (migrations / source.name).write_text(source.read_text())
    nxt = latest_version() + 1
    (migrations / f"{nxt:04d}_extra.sql").write_text(
        "CREATE TABLE extra (x INTEGER);\nCREATE TABLE extra (y);"
    )
    with pytest.raises(sqlite3.OperationalError):
        init_db(tmp_path / "f.db", migrations=migrations)
    conn = sqlite3.connect(tmp_path / "f.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == latest_version()
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'extra'").fetchone()[0] == 0
    conn.close()
    (migrations / f"{nxt:04d}_extra.sql").write_text("CREATE TABLE extra (x INTEGER);")
    conn = init_db(tmp_path / "f.db", migrations=migrations)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == nxt
    conn.close()
    with pytest.raises(RuntimeError, match="newer"):
        init_db(tmp_path / "f.db")  # the file is ahead of the shipped migrations
    (migrations / f"{nxt + 2:04d}_gap.sql").write_text("SELECT 1;")  # nxt + 1 is missing
    with pytest.raises(ValueError, match="without gaps"):
        latest_version(migrations)


# --- the store


def test_order_is_written_pending_before_sending_with_a_deterministic_id(store: OrderStore) -> None:
    intent_id, cid = _entry(store)
    order = store.get_order(cid)
    assert order is not None and order.state is OrderState.PENDING and order.attempt == 1
    assert store.live_orders() == [order]
    assert store.orders_of_intent(intent_id) == [order]


def test_second_entry_refused_while_the_first_may_exist(store: OrderStore) -> None:
    intent_id, cid = _entry(store)

    def again() -> str:
        return store.create_order(
            intent_id, OrderKind.ENTRY, side=Side.BUY, type=OrderType.MARKET, qty=Decimal("0.010")
        ).client_order_id

    store.record(LocalEvent(cid, EventKind.SEND, 1))
    store.record(LocalEvent(cid, EventKind.UNKNOWN_OUTCOME, 2, reason="timeout"))
    with pytest.raises(LiveOrderExists):
        again()
    for t in (3, 4):
        store.record(LocalEvent(cid, EventKind.QUERY_NOT_FOUND, t, source="rest"))
    with pytest.raises(LiveOrderExists):
        again()
    store.record(LocalEvent(cid, EventKind.LOST, 5))
    second = again()
    assert second != cid and second.endswith("-e2")
    # other legs are independent; a closed intent takes no orders
    store.create_order(intent_id, OrderKind.STOP_LOSS, side=Side.SELL, type=OrderType.STOP_MARKET, qty=None,
                       trigger_price=Decimal("41000"), close_position=True, parent_id=cid)  # fmt: skip
    store.set_intent_status(intent_id, IntentStatus.CLOSED)
    with pytest.raises(ValueError):
        store.create_order(intent_id, OrderKind.CLOSE, side=Side.SELL, type=OrderType.MARKET, qty=Decimal(1))


def test_record_persists_event_and_state_in_one_transaction(store: OrderStore) -> None:
    _intent, cid = _entry(store)
    store.record(LocalEvent(cid, EventKind.SEND, 10))
    raw = {"orderId": 22542179, "status": "NEW", "executedQty": "0"}
    tr = store.record(OrderUpdate(cid, VenueStatus.NEW, 11, "rest", "22542179", executed_qty=Decimal(0)), raw)
    assert tr.after is OrderState.NEW
    fill = Fill(cid, 9, Decimal("0.004"), Decimal("30000.1"), 12, "stream", Decimal("0.01"), "USDT")
    assert store.record(fill).after is OrderState.PARTIALLY_FILLED
    assert store.record(fill).duplicate
    rows = store.events(cid)
    assert [row.kind for row in rows] == [EventKind.SEND, EventKind.ACK, EventKind.FILL, EventKind.FILL_SEEN]
    assert json.loads(rows[1].raw or "") == raw and rows[3].duplicate
    assert store.connection.execute("SELECT count(*) FROM fills").fetchone()[0] == 1
    found = store.find_by_exchange_id("BTCUSDT", "22542179")
    assert found is not None and found.client_order_id == cid and found.fills == (fill,)
    assert store.replay(cid) == store.get_order(cid)
    assert [b.entry.client_order_id for b in store.open_brackets()] == [cid]


def test_refused_events_are_kept_for_audit_and_change_nothing(store: OrderStore) -> None:
    _intent, cid = _entry(store)
    before = store.get_order(cid)
    with pytest.raises(IllegalTransition):
        store.record(OrderUpdate(cid, VenueStatus.NEW, 5, "stream"))  # PENDING + ACK: never sent
    store.record(LocalEvent(cid, EventKind.SEND, 6))
    store.record(Fill(cid, 1, Decimal("0.008"), Decimal(1), 7, "stream"))
    with pytest.raises(OverfillError):
        store.record(Fill(cid, 2, Decimal("0.008"), Decimal(1), 8, "stream"))
    rows = store.events(cid, include_refused=True)
    expected = [(False, True), (True, False), (True, False), (False, True)]
    assert [(row.applied, row.error is not None) for row in rows] == expected
    assert before is not None and store.replay(cid).executed_qty == Decimal("0.008")
    with pytest.raises(UnknownOrder):
        store.record(LocalEvent("x-someone-else", EventKind.SEND, 1))


def test_a_trade_id_belongs_to_one_order(store: OrderStore) -> None:
    _i1, cid1 = _entry(store)
    _i2, cid2 = _entry(store)
    for cid in (cid1, cid2):
        store.record(LocalEvent(cid, EventKind.SEND, 1))
    store.record(Fill(cid1, 77, Decimal("0.001"), Decimal(1), 2, "stream"))
    with pytest.raises(IllegalTransition):
        store.record(Fill(cid2, 77, Decimal("0.001"), Decimal(1), 2, "stream"))


def test_replay_on_a_fresh_store_reconstructs_every_order(tmp_path: Path, store: OrderStore) -> None:
    _intent, cid = _entry(store)
    events = [
        LocalEvent(cid, EventKind.SEND, 1),
        LocalEvent(cid, EventKind.UNKNOWN_OUTCOME, 2),
        OrderUpdate(cid, VenueStatus.PARTIALLY_FILLED, 3, "rest", "5", executed_qty=Decimal("0.004")),
        Fill(cid, 1, Decimal("0.004"), Decimal(100), 4, "stream"),
        Fill(cid, 1, Decimal("0.004"), Decimal(100), 4, "rest"),
        OrderUpdate(cid, VenueStatus.CANCELED, 5, "stream", "5", executed_qty=Decimal("0.004")),
        Fill(cid, 2, Decimal("0.006"), Decimal(101), 6, "stream"),
    ]
    for event in events:
        store.record(event)
    original = store.get_order(cid)
    assert original is not None and original.state is OrderState.FILLED
    fresh = OrderStore.open(tmp_path / "fresh.db", now_ms=Clock())
    intent = store.get_intent(original.intent_id)
    assert intent is not None
    fresh.create_intent(intent.symbol, intent.side, intent.qty, intent_id=intent.intent_id)
    fresh.create_order(
        intent.intent_id, OrderKind.ENTRY, side=Side.BUY, type=OrderType.MARKET, qty=original.qty
    )
    for stored in store.events(cid):
        fresh.record(stored.event)
    copy = fresh.get_order(cid)
    assert copy is not None
    fields = ("state", "executed_qty", "venue_executed_qty", "avg_price", "fills", "exchange_order_id",
              "not_found_count", "updated_ms")  # fmt: skip
    assert [getattr(copy, f) for f in fields] == [getattr(original, f) for f in fields]
    assert fresh.replay(cid) == copy and store.replay(cid) == original  # replay is idempotent
    for stored in store.events(cid):  # fills delivered once more are no-ops
        if isinstance(stored.event, Fill):
            assert fresh.record(stored.event).duplicate
    assert fresh.get_order(cid) == copy
