"""Helpers of the end-to-end system test (``tests/test_e2e_system.py``): an independent view of the run.

* :class:`ExchangeApi`: the paper exchange's Binance REST API through python-binance's synchronous
  ``Client`` (a timeout on every call).  It shares no code with the coordinator's exchange client on
  purpose: the test checks the coordinator against the exchange through a real Binance client
  library, not through the implementation under test.
* :class:`JournalView`: read-only queries of the coordinator's SQLite file (``<home>/xylen.db``).
* :func:`scrape`: the coordinator's Prometheus text, parsed into ``{(name, labels): value}``.

The processes themselves are started with :mod:`xylen.demo_services`, as ``xylen demo`` starts them.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

HTTP_TIMEOUT_S = 5.0
NOT_FOUND = -2013  # "Order does not exist."
FINAL_STATES = frozenset({"FILLED", "CANCELED", "EXPIRED", "REJECTED", "NOT_FOUND"})


def _binance_client(url: str, key: str, secret: str, timeout_s: float) -> Any:
    """python-binance's synchronous ``Client`` pointed at the paper exchange (no ping at creation)."""
    from binance import Client

    class LocalClient(Client):  # type: ignore[misc]  # class attributes: every request goes to ``url``
        API_URL = f"{url}/api"
        FUTURES_URL = f"{url}/fapi"

    return LocalClient(key, secret, requests_params={"timeout": timeout_s}, ping=False)


@dataclass
class ExchangeApi:
    """The paper exchange at ``url`` seen through python-binance (signed Binance USDⓈ-M REST)."""

    url: str
    key: str
    secret: str
    timeout_s: float = HTTP_TIMEOUT_S
    client: Any = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.client = _binance_client(self.url, self.key, self.secret, self.timeout_s)

    def replay_time(self, symbol: str) -> int:
        """The exchange's replay time ("now" of its orders and fills): ``premiumIndex``'s ``time``;
        its ``/fapi/v1/time`` is wall time (what signatures are checked against)."""
        return int(self.client.futures_mark_price(symbol=symbol)["time"])

    def order(self, symbol: str, client_order_id: str) -> dict[str, Any] | None:
        """``GET /fapi/v1/order`` by clientOrderId; None when the exchange never saw it (-2013)."""
        return _unless_not_found(
            lambda: self.client.futures_get_order(symbol=symbol, origClientOrderId=client_order_id)
        )

    def algo_order(self, client_algo_id: str) -> dict[str, Any] | None:
        """``GET /fapi/v1/algoOrder`` by clientAlgoId; None when unknown."""
        return _unless_not_found(lambda: self.client.futures_get_order(clientAlgoId=client_algo_id))

    def open_orders(self, symbol: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.client.futures_get_open_orders(symbol=symbol)
        return rows

    def open_algo_orders(self, symbol: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.client.futures_get_open_orders(symbol=symbol, conditional=True)
        return rows

    def position(self, symbol: str) -> Decimal:
        """The signed position amount in ``symbol`` (one-way mode; ``/fapi/v3/positionRisk``)."""
        rows = self.client.futures_position_information(symbol=symbol)
        return sum((Decimal(r["positionAmt"]) for r in rows if r["symbol"] == symbol), Decimal(0))

    def user_trades(self, symbol: str) -> list[dict[str, Any]]:
        """Every fill of the account in ``symbol``, oldest first (paged by ``fromId``)."""
        out: list[dict[str, Any]] = []
        from_id = 0
        while True:
            page: list[dict[str, Any]] = self.client.futures_account_trades(
                symbol=symbol, fromId=from_id, limit=1000
            )
            out.extend(page)
            if len(page) < 1000:
                return out
            from_id = int(page[-1]["id"]) + 1


def _unless_not_found(call: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
    from binance.exceptions import BinanceAPIException

    try:
        return call()
    except BinanceAPIException as exc:
        if exc.code == NOT_FOUND:
            return None
        raise


@dataclass
class JournalView:
    """Read-only access to the coordinator's SQLite file, one short connection per query."""

    path: Path

    @contextlib.contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5.0)
        try:
            yield conn
        finally:
            conn.close()

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if not self.path.exists():
            return []
        try:
            with self.connect() as conn:
                return conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:  # not created or not migrated yet
            if "no such table" in str(exc):
                return []
            raise

    def scalar(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        rows = self.rows(sql, params)
        return rows[0][0] if rows else None

    def beats(self) -> int:
        return int(self.scalar("SELECT COUNT(*) FROM snapshots") or 0)

    def max_rowid(self) -> int:
        return int(self.scalar("SELECT COALESCE(MAX(rowid), 0) FROM snapshots") or 0)

    def votes_after(self, rowid: int, model_id: str) -> list[str]:
        """The status of ``model_id``'s vote in each beat after snapshot ``rowid``, oldest first."""
        return [
            r[0]
            for r in self.rows(
                "SELECT p.status FROM snapshots s JOIN model_predictions p USING (beat_id)"
                " WHERE s.rowid > ? AND p.model_id = ? ORDER BY s.rowid",
                (rowid, model_id),
            )
        ]

    def entries(self) -> int:
        return int(self.scalar("SELECT COUNT(*) FROM orders WHERE kind = 'entry'") or 0)


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Prometheus text from ``url`` as ``{(name, frozenset(labels)): value}`` (comments skipped)."""
    with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as response:
        text = response.read().decode()
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    sample = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
    for line in text.splitlines():
        match = sample.match(line)
        if match is None or line.startswith("#"):
            continue
        name, labels, value = match.groups()
        pairs = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', labels or ""))
        out[(name, pairs)] = float(value)
    return out


def metric(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, pairs), v in samples.items() if n == name and want <= pairs)


def wait_until(what: str, check: Callable[[], T | None], timeout_s: float, alive: Callable[[], None]) -> T:
    """Poll ``check`` every 20 ms until it returns something truthy; ``alive`` raises if a process died."""
    deadline = time.monotonic() + timeout_s
    while True:
        alive()
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.02)
