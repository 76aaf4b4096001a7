"""Helpers of the end-to-end system test (``tests/test_e2e_system.py``): an independent view of the run.

* :class:`ExchangeApi`: a small synchronous client of the paper exchange's Binance REST API (signed
  with HMAC-SHA256 as Binance specifies, ``urllib`` with a timeout on every call).  It shares no code
  with the coordinator's exchange client on purpose: the test checks the coordinator against the
  exchange through a second implementation of the protocol, not through the one under test.
* :class:`JournalView`: read-only queries of the coordinator's SQLite file (``<home>/xylen.db``).
* :func:`scrape`: the coordinator's Prometheus text, parsed into ``{(name, labels): value}``.

The processes themselves are started with :mod:`xylen.demo_services`, as ``xylen demo`` starts them.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import re
import sqlite3
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

HTTP_TIMEOUT_S = 5.0
NOT_FOUND = -2013  # "Order does not exist."
FINAL_STATES = frozenset({"FILLED", "CANCELED", "EXPIRED", "REJECTED", "NOT_FOUND"})


class ApiError(Exception):
    """The exchange answered with an error body ``{"code": ..., "msg": ...}``."""

    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(f"HTTP {status}: {code} {msg}")
        self.status, self.code, self.msg = status, code, msg


@dataclass(frozen=True)
class ExchangeApi:
    """Signed requests to the paper exchange at ``url`` (Binance USDⓈ-M REST)."""

    url: str
    key: str
    secret: str
    timeout_s: float = HTTP_TIMEOUT_S

    def request(
        self, method: str, path: str, params: dict[str, str] | None = None, signed: bool = True
    ) -> Any:
        query = dict(params or {})
        if signed:
            query.update(timestamp=str(time.time_ns() // 1_000_000), recvWindow="10000")
        text = urllib.parse.urlencode(query)
        if signed:
            signature = hmac.new(self.secret.encode(), text.encode(), hashlib.sha256).hexdigest()
            text = f"{text}&signature={signature}"
        request = urllib.request.Request(
            f"{self.url}{path}?{text}", method=method, headers={"X-MBX-APIKEY": self.key}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            body = exc.read()
            try:
                error = json.loads(body)
                raise ApiError(exc.code, int(error["code"]), str(error.get("msg", ""))) from None
            except (ValueError, KeyError, TypeError):
                raise ApiError(exc.code, 0, body[:200].decode(errors="replace")) from None

    def server_time(self) -> int:
        """``/fapi/v1/time``: the paper exchange answers its WALL clock here (what signatures use)."""
        return int(self.request("GET", "/fapi/v1/time", signed=False)["serverTime"])

    def replay_time(self, symbol: str) -> int:
        """The exchange's replay time ("now" of its orders and fills): ``premiumIndex``'s ``time``."""
        return int(self.request("GET", "/fapi/v1/premiumIndex", {"symbol": symbol}, signed=False)["time"])

    def order(self, symbol: str, client_order_id: str) -> dict[str, Any] | None:
        """``GET /fapi/v1/order`` by clientOrderId; None when the exchange never saw it (-2013)."""
        try:
            reply: dict[str, Any] = self.request(
                "GET", "/fapi/v1/order", {"symbol": symbol, "origClientOrderId": client_order_id}
            )
        except ApiError as exc:
            if exc.code == NOT_FOUND:
                return None
            raise
        return reply

    def algo_order(self, client_algo_id: str) -> dict[str, Any] | None:
        """``GET /fapi/v1/algoOrder`` by clientAlgoId; None when unknown."""
        try:
            reply: dict[str, Any] = self.request(
                "GET", "/fapi/v1/algoOrder", {"clientAlgoId": client_algo_id}
            )
        except ApiError as exc:
            if exc.code == NOT_FOUND:
                return None
            raise
        return reply

    def open_orders(self, symbol: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.request("GET", "/fapi/v1/openOrders", {"symbol": symbol})
        return rows

    def open_algo_orders(self, symbol: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.request("GET", "/fapi/v1/openAlgoOrders", {"symbol": symbol})
        return rows

    def position(self, symbol: str) -> Decimal:
        """The signed position amount in ``symbol`` (one-way mode)."""
        rows = self.request("GET", "/fapi/v3/positionRisk", {"symbol": symbol})
        return sum((Decimal(r["positionAmt"]) for r in rows if r["symbol"] == symbol), Decimal(0))

    def user_trades(self, symbol: str) -> list[dict[str, Any]]:
        """Every fill of the account in ``symbol``, oldest first (paged by ``fromId``)."""
        out: list[dict[str, Any]] = []
        from_id = 0
        while True:
            page: list[dict[str, Any]] = self.request(
                "GET", "/fapi/v1/userTrades", {"symbol": symbol, "fromId": str(from_id), "limit": "1000"}
            )
            out.extend(page)
            if len(page) < 1000:
                return out
            from_id = int(page[-1]["id"]) + 1


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
