"""The paper exchange's own SQLite file: its state survives its restart and a client's crash.

One row per object, keyed by its identity, holding the object's fields as JSON (``data``):
``accounts``, ``settings`` (leverage, margin type), ``positions``, ``orders``, ``algo_orders``,
``trades`` and ``income`` (insert-only), ``meta`` (replay clock position) and ``listen_keys``.  Id
counters are derived from the highest stored ids on load.

Durability: WAL journal; ``synchronous=NORMAL`` by default (a commit reaches the OS before
the call returns, so it survives the process being killed - SIGKILL included - though not a
power cut), ``FULL`` on request (an fsync per commit).  :meth:`ExchangeStore.save` writes one
engine operation's :class:`~paper_exchange.engine.Changes` in one transaction; the service
calls it before it replies.  The schema version is ``PRAGMA user_version``.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path
from typing import Any, Final

import orjson

from paper_exchange.engine.core import Snapshot
from paper_exchange.engine.models import (
    Account,
    AlgoOrder,
    Changes,
    Income,
    Order,
    Position,
    SymbolSettings,
    Trade,
)

logger = logging.getLogger(__name__)

SCHEMA_VERSION: Final = 2  # 2: the income table (a version-1 file gains it on open)
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (key TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS settings (
    account TEXT NOT NULL, symbol TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (account, symbol));
CREATE TABLE IF NOT EXISTS positions (
    account TEXT NOT NULL, symbol TEXT NOT NULL, position_side TEXT NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (account, symbol, position_side));
CREATE TABLE IF NOT EXISTS orders (
    order_id INTEGER PRIMARY KEY, account TEXT NOT NULL, symbol TEXT NOT NULL,
    client_order_id TEXT NOT NULL, status TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS algo_orders (
    algo_id INTEGER PRIMARY KEY, account TEXT NOT NULL, status TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trades (
    trade_id INTEGER PRIMARY KEY, account TEXT NOT NULL, symbol TEXT NOT NULL,
    order_id INTEGER NOT NULL, time INTEGER NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS income (
    tran_id INTEGER PRIMARY KEY, account TEXT NOT NULL, symbol TEXT NOT NULL,
    income_type TEXT NOT NULL, time INTEGER NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS listen_keys (
    listen_key TEXT PRIMARY KEY, account TEXT NOT NULL, expires_ms INTEGER NOT NULL);
"""


def _dumps(row: dict[str, Any]) -> str:
    return orjson.dumps(row).decode()


class ExchangeStore:
    """SQLite persistence of the engine state (single writer; not thread-safe)."""

    def __init__(self, path: str | os.PathLike[str], synchronous: str = "NORMAL") -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError("synchronous must be NORMAL or FULL")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(f"PRAGMA synchronous={synchronous}")
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, 1, SCHEMA_VERSION):
            raise RuntimeError(f"{self.path}: schema version {version} is newer than this code")
        self._conn.executescript(_SCHEMA)
        self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        self._conn.close()

    # -- writing ------------------------------------------------------------------------------------
    def save(self, changes: Changes) -> None:
        """Write one operation's changes in one transaction (committed when this returns)."""
        if not changes:
            return
        conn = self._conn
        conn.execute("BEGIN")
        try:
            if changes.accounts:
                conn.executemany(
                    "INSERT OR REPLACE INTO accounts VALUES (?, ?)",
                    [(a.key, _dumps(a.to_row())) for a in changes.accounts.values()],
                )
            if changes.settings:
                conn.executemany(
                    "INSERT OR REPLACE INTO settings VALUES (?, ?, ?)",
                    [(s.account, s.symbol, _dumps(s.to_row())) for s in changes.settings.values()],
                )
            if changes.positions:
                conn.executemany(
                    "INSERT OR REPLACE INTO positions VALUES (?, ?, ?, ?)",
                    [
                        (p.account, p.symbol, p.position_side, _dumps(p.to_row()))
                        for p in changes.positions.values()
                    ],
                )
            if changes.orders:
                conn.executemany(
                    "INSERT OR REPLACE INTO orders VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        (
                            o.order_id,
                            o.account,
                            o.symbol,
                            o.client_order_id,
                            o.status.value,
                            _dumps(o.to_row()),
                        )
                        for o in changes.orders.values()
                    ],
                )
            if changes.algos:
                conn.executemany(
                    "INSERT OR REPLACE INTO algo_orders VALUES (?, ?, ?, ?)",
                    [
                        (a.algo_id, a.account, a.status.value, _dumps(a.to_row()))
                        for a in changes.algos.values()
                    ],
                )
            if changes.trades:
                conn.executemany(
                    "INSERT INTO trades VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        (t.trade_id, t.account, t.symbol, t.order_id, t.time, _dumps(t.to_row()))
                        for t in changes.trades
                    ],
                )
            if changes.incomes:
                conn.executemany(
                    "INSERT INTO income VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        (i.tran_id, i.account, i.symbol, i.income_type, i.time, _dumps(i.to_row()))
                        for i in changes.incomes
                    ],
                )
            if changes.clock_ms is not None:
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('clock_ms', ?)", (str(changes.clock_ms),))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def set_meta(self, key: str, value: str) -> None:
        with self._conn:
            self._conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def get_meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    # -- listen keys (for the user-data stream) -----------------------------------------------------
    def save_listen_key(self, listen_key: str, account: str, expires_ms: int) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO listen_keys VALUES (?, ?, ?)", (listen_key, account, expires_ms)
        )

    def delete_listen_key(self, listen_key: str) -> None:
        self._conn.execute("DELETE FROM listen_keys WHERE listen_key = ?", (listen_key,))

    def listen_keys(self) -> list[tuple[str, str, int]]:
        rows = self._conn.execute(
            "SELECT listen_key, account, expires_ms FROM listen_keys ORDER BY listen_key"
        )
        return [(str(k), str(a), int(e)) for k, a, e in rows]

    # -- reading ------------------------------------------------------------------------------------
    def _rows(self, table: str, order: str) -> list[dict[str, Any]]:
        sql = f"SELECT data FROM {table} ORDER BY {order}"  # nosec B608 # names of this module
        cursor = self._conn.execute(sql)
        return [orjson.loads(r[0]) for r in cursor]

    def load(self) -> Snapshot:
        """Everything stored, ready for :meth:`~paper_exchange.engine.Engine.restore`."""
        clock = self.get_meta("clock_ms")
        return Snapshot(
            accounts=[Account.from_row(r) for r in self._rows("accounts", "key")],
            settings=[SymbolSettings.from_row(r) for r in self._rows("settings", "account, symbol")],
            positions=[
                Position.from_row(r) for r in self._rows("positions", "account, symbol, position_side")
            ],
            orders=[Order.from_row(r) for r in self._rows("orders", "order_id")],
            algos=[AlgoOrder.from_row(r) for r in self._rows("algo_orders", "algo_id")],
            trades=[Trade.from_row(r) for r in self._rows("trades", "trade_id")],
            incomes=[Income.from_row(r) for r in self._rows("income", "tran_id")],
            clock_ms=int(clock) if clock is not None else None,
        )
