"""The coordinator crash harness: kill ``xylen run`` itself while it trades, check before and after repair.

Shared by ``bench/bench_coordinator_crash.py`` (100 trials) and ``tests/test_coordinator_crash.py``
(a short run in ``make test``).  Everything runs as real processes on 127.0.0.1, started as
``xylen demo`` starts them (:mod:`xylen.demo_services`, each child in its own session, so a kill of
its process group leaves nothing behind): the paper exchange replaying the real BTCUSDT 5m candles
at ``speed`` x wall time (optionally with a fault file), one LightGBM model server, and the
coordinator (``python -m xylen run``) on the accelerated clock at the same speed.

Trading often on purpose: the coordinator runs the config of ``xylen demo --show-trades`` (no priced
costs, ``min_edge`` 0, wide breakers), MARKET entries, and stops and take-profits at 0.5 and 0.8 ATR,
so brackets open and close within a few beats.

The venue is read from the paper exchange's own SQLite file (``<home>/paper_exchange.db``), which
it commits before it replies and before a replay tick's fills are visible: one read transaction is
a consistent picture of every order, algo order, trade and position at one instant, and reading it
costs no request weight (the coordinator's rate limits are part of what is tested).  The
coordinator's side is its journal (``<home>/xylen.db``), read-only.  The comparison shares no code
with the coordinator: client ids are parsed with their own pattern here.

One trial (:meth:`CrashRig.trial`): the coordinator trades for a random time (or until it writes a
new entry, to land in the split second between a fill and its stop), is killed, and then, BEFORE
any repair, the venue is compared with the journal (:func:`compare`):

- lost: an order or algo order on the venue with our client-id prefix that the journal lacks; a
  venue trade of one of our orders that the journal's ``fills`` lack is a fill not yet recorded at
  the kill (a figure: the stream event may not have arrived), and lost if still missing after
  the restart and one monitor round;
- phantom: a journal order that claims to be live or filled while the venue has no such order, a
  FILLED order whose executed quantity the venue does not show, a recorded fill the venue does not
  have (or with another quantity, price or order);
- duplicated: one client id twice among the venue's orders or algo orders, two filled entries for
  one intent, two open stops on one position;
- unprotected at the kill: a position with no open stop (a figure: legitimate for the split second
  between an entry's fill and its stop).

Then the coordinator is restarted on the same home; once it serves its metrics (reconciliation is
done by then) the venue is read (V1), one monitor round is waited, and the journal and the venue
are read again (J2, V2).  After restart: every venue object of V1 must be in J2 (lost), J2 must
agree with V2 (phantom), V2 has no duplicates, and a position without a stop in both V1 and V2 (the
same amount and entry price) is unprotected.  Only these after-restart counts must be 0.

Scenarios beyond a plain SIGKILL:

- ``restore``: ``xylen db backup`` while running, trade on, try ``xylen db restore`` while it runs
  (it must be refused: the coordinator holds its home), SIGTERM, ``xylen db restore``, restart.
  Venue objects the restored database cannot know (made after the backup) are "forgotten by the
  restore" (a figure) and excluded from "lost" afterwards; the position they leave must still be
  protected after the restart;
- ``sigterm``: the exchange delays ``/fapi/v1/algoOrder`` (latency fault); SIGTERM lands while a
  stop is being sent (journal state PENDING or SUBMITTED).  Exit 0 with a position left without a
  stop is a failure; a non-zero exit with the position unprotected is what the coordinator must
  do when it cannot finish the stop;
- ``foreign``: another client uses weight on the IP (``foreign_weight_per_s`` fault); plain
  SIGKILL trials, counting the 429s and 418 bans the coordinator logged.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import yaml

from xylen.demo_services import (
    Child,
    Children,
    demo_config,
    free_port,
    health_ok,
    start_coordinator,
    start_model_server,
    start_paper_exchange,
    wait_ready,
)
from xylen.paths import Home

SYMBOL = "BTCUSDT"
KEY, SECRET = "crash-key", "crash-secret"
MODEL_TOKEN = "crash-model-token"
OURS = re.compile(r"^xy-([0-9a-f]{20})-([estc])([0-9]+)$")
STOP_TYPES = frozenset({"STOP_MARKET", "STOP"})
ALGO_TYPES = frozenset({"STOP_MARKET", "TAKE_PROFIT_MARKET", "STOP", "TAKE_PROFIT", "TRAILING_STOP_MARKET"})
LIVE = frozenset({"NEW", "PARTIALLY_FILLED"})
IN_FLIGHT = frozenset({"PENDING", "SUBMITTED"})
READY_TIMEOUT_S = 90.0
EXIT_TIMEOUT_S = 30.0
POLL_S = 0.01
ALGO_LATENCY_MS = 1500
FOREIGN_WEIGHT_PER_S = 35.0  # 2,100 of the IP's 2,400 a minute: the coordinator has 300 left
SCENARIOS = ("kill", "restore", "sigterm", "foreign")


# -- the venue and the journal, read-only ---------------------------------------------------------
@dataclass(frozen=True)
class VenueOrder:
    cid: str
    order_id: int
    status: str
    executed: Decimal


@dataclass(frozen=True)
class VenueAlgo:
    cid: str
    algo_id: int
    status: str
    order_type: str
    side: str
    close_position: bool
    reduce_only: bool


@dataclass(frozen=True)
class VenueTrade:
    trade_id: int
    order_id: int
    qty: Decimal
    price: Decimal


@dataclass(frozen=True)
class VenuePosition:
    amount: Decimal
    entry_price: Decimal


@dataclass
class Venue:
    """Every order, algo order, trade and the open positions of the paper exchange at one instant."""

    orders: list[VenueOrder]
    algos: list[VenueAlgo]
    trades: list[VenueTrade]
    positions: list[VenuePosition]
    owner: dict[int, str]  # venue order id -> the client id it belongs to (a triggered algo's)

    def unprotected(self) -> list[VenuePosition]:
        return [p for p in self.positions if not self.stops(p)]

    def stops(self, position: VenuePosition) -> list[VenueAlgo]:
        closing = "SELL" if position.amount > 0 else "BUY"
        return [
            a
            for a in self.algos
            if a.status == "NEW" and a.order_type in STOP_TYPES and a.side == closing
            and (a.close_position or a.reduce_only)
        ]  # fmt: skip

    def ours(self) -> set[str]:
        return {o.cid for o in self.orders if OURS.match(o.cid)} | {
            a.cid for a in self.algos if OURS.match(a.cid)
        }


def read_venue(path: Path) -> Venue:
    """The paper exchange's state from its SQLite file, in one read transaction."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0, isolation_level=None)
    try:
        conn.execute("BEGIN")
        orders = [orjson.loads(r[0]) for r in conn.execute("SELECT data FROM orders ORDER BY order_id")]
        algos = [orjson.loads(r[0]) for r in conn.execute("SELECT data FROM algo_orders ORDER BY algo_id")]
        trades = [orjson.loads(r[0]) for r in conn.execute("SELECT data FROM trades ORDER BY trade_id")]
        positions = [orjson.loads(r[0]) for r in conn.execute("SELECT data FROM positions")]
        conn.execute("COMMIT")
    finally:
        conn.close()
    owner = {int(o["order_id"]): str(o["client_order_id"]) for o in orders}
    for a in algos:
        if a.get("actual_order_id") is not None:
            owner[int(a["actual_order_id"])] = str(a["client_algo_id"])
    return Venue(
        orders=[
            VenueOrder(
                str(o["client_order_id"]), int(o["order_id"]), str(o["status"]), Decimal(o["executed_qty"])
            )
            for o in orders
        ],
        algos=[
            VenueAlgo(
                str(a["client_algo_id"]),
                int(a["algo_id"]),
                str(a["status"]),
                str(a["order_type"]),
                str(a["side"]),
                bool(a["close_position"]),
                bool(a["reduce_only"]),
            )
            for a in algos
        ],
        trades=[
            VenueTrade(int(t["trade_id"]), int(t["order_id"]), Decimal(t["qty"]), Decimal(t["price"]))
            for t in trades
            if t["symbol"] == SYMBOL
        ],
        positions=[
            VenuePosition(Decimal(p["amount"]), Decimal(p["entry_price"]))
            for p in positions
            if p["symbol"] == SYMBOL and Decimal(p["amount"]) != 0
        ],
        owner=owner,
    )


@dataclass(frozen=True)
class JournalOrder:
    cid: str
    kind: str
    type: str
    state: str
    executed: Decimal


@dataclass(frozen=True)
class JournalFill:
    cid: str
    qty: Decimal
    price: Decimal
    exchange_order_id: str | None


@dataclass
class Journal:
    orders: dict[str, JournalOrder]
    fills: dict[int, JournalFill]

    def entries(self) -> int:
        return sum(1 for o in self.orders.values() if o.kind == "entry")


def read_journal(path: Path) -> Journal:
    """The coordinator's orders and fills (empty before its first start)."""
    if not path.exists():
        return Journal({}, {})
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0, isolation_level=None)
    try:
        conn.execute("BEGIN")
        try:
            orders = conn.execute(
                "SELECT client_order_id, kind, type, state, executed_qty FROM orders"
            ).fetchall()
            fills = conn.execute(
                "SELECT trade_id, client_order_id, qty, price, exchange_order_id FROM fills"
            ).fetchall()
        except sqlite3.OperationalError as exc:  # not migrated yet
            if "no such table" not in str(exc):
                raise
            orders, fills = [], []
        conn.execute("COMMIT")
    finally:
        conn.close()
    return Journal(
        {r[0]: JournalOrder(r[0], r[1], r[2], r[3], Decimal(r[4])) for r in orders},
        {int(r[0]): JournalFill(r[1], Decimal(r[2]), Decimal(r[3]), r[4]) for r in fills},
    )


# -- the comparison --------------------------------------------------------------------------------
@dataclass
class Findings:
    lost: list[str] = field(default_factory=list)
    unrecorded_fills: list[str] = field(default_factory=list)
    phantom: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)


def lost_objects(venue: Venue, journal: Journal, forgotten: set[str]) -> Findings:
    """Venue orders and trades of ours that the journal lacks (``forgotten``: excused client ids)."""
    found = Findings()
    for cid in sorted(venue.ours() - forgotten):
        if cid not in journal.orders:
            found.lost.append(f"lost: {cid} is on the venue, not in SQLite")
    for trade in venue.trades:
        cid = venue.owner.get(trade.order_id, "")
        if OURS.match(cid) and cid not in forgotten and trade.trade_id not in journal.fills:
            found.unrecorded_fills.append(f"trade {trade.trade_id} of {cid} ({trade.qty} @ {trade.price})")
    return found


def phantoms(venue: Venue, journal: Journal) -> list[str]:
    """Journal claims the venue does not back (a venue read no older than the journal's)."""
    out: list[str] = []
    orders: dict[str, list[VenueOrder]] = {}
    for venue_order in venue.orders:
        orders.setdefault(venue_order.cid, []).append(venue_order)
    algos = {a.cid: a for a in venue.algos}
    for o in journal.orders.values():
        if o.type in ALGO_TYPES:
            algo = algos.get(o.cid)
            if o.state in LIVE | {"FILLED"} and algo is None:
                out.append(f"phantom: {o.kind} {o.cid} is {o.state} in SQLite, not on the venue")
            elif o.state == "FILLED" and algo is not None and algo.status not in {"TRIGGERED", "FINISHED"}:
                out.append(f"phantom: {o.kind} {o.cid} FILLED in SQLite, {algo.status} on the venue")
            continue
        mine = orders.get(o.cid, [])
        if o.state in LIVE | {"FILLED"} and not mine:
            out.append(f"phantom: {o.kind} {o.cid} is {o.state} in SQLite, not on the venue")
        elif o.state == "FILLED" and not any(v.status == "FILLED" and v.executed == o.executed for v in mine):
            out.append(f"phantom: {o.kind} {o.cid} FILLED {o.executed} in SQLite, venue {mine}")
    trades = {t.trade_id: t for t in venue.trades}
    for trade_id, fill in journal.fills.items():
        trade = trades.get(trade_id)
        if trade is None:
            out.append(f"phantom: fill {trade_id} of {fill.cid} is not on the venue")
        elif (trade.qty, trade.price) != (fill.qty, fill.price) or venue.owner.get(
            trade.order_id
        ) != fill.cid:
            out.append(f"phantom: fill {trade_id} of {fill.cid} ({fill.qty} @ {fill.price}) differs: {trade}")
    return out


def duplicates(venue: Venue) -> list[str]:
    """One client id twice, two filled entries for one intent, two open stops on one position."""
    out: list[str] = []
    for what, cids in (
        ("orders", [o.cid for o in venue.orders]),
        ("algo orders", [a.cid for a in venue.algos]),
    ):
        for cid, n in Counter(c for c in cids if OURS.match(c)).items():
            if n > 1:
                out.append(f"duplicated: {cid} {n} times among the venue's {what}")
    filled_entries: Counter[str] = Counter()
    for order in venue.orders:
        match = OURS.match(order.cid)
        if match and match.group(2) == "e" and order.executed > 0:
            filled_entries[match.group(1)] += 1
    out.extend(f"duplicated: intent {d} has {n} filled entries" for d, n in filled_entries.items() if n > 1)
    for position in venue.positions:
        stops = venue.stops(position)
        if len(stops) > 1:
            out.append(f"duplicated: {len(stops)} stops on the position {position.amount}: {stops}")
    return out


COUNTS = (
    "trials", "unprotected_at_kill", "unrecorded_fills_at_kill", "forgotten_by_restore", "lost", "phantom",
    "duplicated", "unprotected", "positions_checked", "refusals_missing", "stops_in_flight",
    "orders", "trades",
)  # fmt: skip


# -- figures -----------------------------------------------------------------------------------------
@dataclass
class Figures:
    """Counts of one scenario (or of all, added up)."""

    trials: int = 0
    unprotected_at_kill: int = 0
    unrecorded_fills_at_kill: int = 0
    forgotten_by_restore: int = 0
    lost: int = 0
    phantom: int = 0
    duplicated: int = 0
    unprotected: int = 0
    positions_checked: int = 0
    refusals_missing: int = 0  # a restore or exit that should have been refused / non-zero, and was not
    exits: Counter[int] = field(default_factory=Counter)
    rate_limited: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    stops_in_flight: int = 0  # SIGTERMs sent while a stop was being placed
    orders: int = 0
    trades: int = 0
    skipped: str = ""

    def add(self, other: Figures) -> None:
        for name in COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.exits.update(other.exits)
        self.rate_limited.update(other.rate_limited)
        self.problems.extend(other.problems)

    @property
    def failures(self) -> int:
        return self.lost + self.phantom + self.duplicated + self.unprotected + self.refusals_missing

    def line(self) -> str:
        extra = ""
        if self.exits:
            extra += " exits " + ",".join(f"{code}:{n}" for code, n in sorted(self.exits.items()))
        if self.stops_in_flight:
            extra += f" SIGTERMs with a stop in flight={self.stops_in_flight}"
        if self.rate_limited:
            extra += " rate-limited " + ",".join(f"{k}:{n}" for k, n in sorted(self.rate_limited.items()))
        return (
            f"trials={self.trials} venue orders={self.orders} venue trades={self.trades} | at the kill: "
            f"unprotected={self.unprotected_at_kill} fills not yet recorded={self.unrecorded_fills_at_kill}"
            f" forgotten by a restore={self.forgotten_by_restore} | lost={self.lost} phantom={self.phantom}"
            f" duplicated={self.duplicated} unprotected after restart={self.unprotected}"
            f" (positions checked={self.positions_checked}) refusals missing={self.refusals_missing}{extra}"
        )


# -- the processes --------------------------------------------------------------------------------
def prepare_model(btc_5m: Path, folder: Path) -> Path:
    """A LightGBM model directory trained on the real candles (the model server tests' trainer)."""
    from model_server.tests.server_support import train_booster, write_model_dir

    target = folder / "v1"
    if not target.is_dir():
        write_model_dir(target, train_booster(btc_5m, rounds=30, seed=0), "crash-v1")
    return target


def fault_text(scenario: str) -> str | None:
    if scenario == "sigterm":
        return f"seed: 3\nlatency_ms: {{fixed: {ALGO_LATENCY_MS}, paths: [/fapi/v1/algoOrder]}}\n"
    if scenario == "foreign":
        return f"seed: 3\nforeign_weight_per_s: {FOREIGN_WEIGHT_PER_S}\n"
    return None


def foreign_weight_supported() -> bool:
    from paper_exchange.faults import FaultConfig

    return "foreign_weight_per_s" in FaultConfig.model_fields


def coordinator_config(
    exchange_port: int, model_port: int, metrics_port: int, speed: float, brackets: tuple[float, float]
) -> dict[str, Any]:
    """``xylen demo --show-trades``'s config at ``speed``, made to open and close brackets often."""
    config = demo_config(
        SYMBOL, exchange_port, {"lgbm": model_port}, metrics_port, free_port(), trade_freely=True
    )
    config["model_servers"] = [
        {"id": "crash-lgbm", "url": f"http://127.0.0.1:{model_port}", "timeout_ms": 1000}
    ]
    config["heartbeat"].update(speed=speed, deadline_seconds=240.0)
    config["market"]["history_candles"] = 1000
    config["exchange"].update(request_timeout_seconds=5.0, poll_interval_seconds=1.0)
    config["trading"].update(
        entry="market", stop_atr_multiple=brackets[0], take_profit_atr_multiple=brackets[1]
    )
    config["dashboard"] = {"enabled": False}
    config["logging"] = {"level": "INFO", "format": "text"}
    return config


class CrashRig:
    """One paper exchange (with ``scenario``'s faults), one model server, the coordinator on one home."""

    def __init__(
        self, root: Path, candles: Path, model: Path, scenario: str, speed: float, seed: int
    ) -> None:
        self.scenario = scenario
        self.speed = speed
        self.rng = random.Random(seed)
        self.home = Home(root / scenario)
        self.home.root.mkdir(parents=True)
        (self.home.root / "candles").symlink_to(candles, target_is_directory=True)
        shutil.copytree(model, self.home.models / "demo-lgbm" / model.name)
        env = {
            k: v for k, v in os.environ.items() if k not in {"XYLEN_HOME", "NOTIFY_SOCKET", "WATCHDOG_USEC"}
        }
        env.update(XYLEN_PAPER_API_KEY=KEY, XYLEN_PAPER_API_SECRET=SECRET, XYLEN_MODEL_TOKEN=MODEL_TOKEN,
                   TRAINING_INTERVAL="0", PYTHONUNBUFFERED="1")  # fmt: skip
        self.env = env
        self.children = Children(self.home, env)
        self.figures = Figures()
        self.forgotten: set[str] = set()
        self.coordinator: Child | None = None
        self.metrics_url = ""
        self.config_path = self.home.root / "crash-config.yaml"
        # stop and take-profit in ATRs: close, so brackets open and close every few beats; wider for a
        # restore, so that a position opened after the backup is still open when the coordinator restarts
        self.brackets = (3.0, 5.0) if scenario == "restore" else (0.5, 0.8)
        self.monitor_round_s = 2.5 + (ALGO_LATENCY_MS / 1000 * 2 if scenario == "sigterm" else 0.0)

    # lifecycle
    def start(self) -> None:
        faults = fault_text(self.scenario)
        extra = ["--tick-ms", "20", "--start", "2024-01-02"]
        if faults is not None:
            fault_file = self.home.root / "faults.yaml"
            fault_file.write_text(faults, encoding="utf-8")
            extra += ["--faults", str(fault_file)]
        exchange, exchange_port = start_paper_exchange(self.children, SYMBOL, self.speed, None, *extra)
        server, model_port = start_model_server(self.children, "lgbm", "lightgbm")
        wait_ready(exchange, f"http://127.0.0.1:{exchange_port}/fapi/v1/ping", 60, lambda s, _b: s == 200)
        wait_ready(server, f"http://127.0.0.1:{model_port}/health", 90, health_ok)
        metrics_port = free_port()
        self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        config = coordinator_config(exchange_port, model_port, metrics_port, self.speed, self.brackets)
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        self.start_coordinator()

    def close(self) -> None:
        pids = [c.proc.pid for c in self.children.children]
        self.children.stop_all()
        for pid in pids:  # each child leads its own session: nothing of it may remain
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)

    def alive(self) -> None:
        for child in self.children.children:
            child.check_alive()

    def start_coordinator(self) -> None:
        self.coordinator = start_coordinator(self.children, self.config_path)
        wait_ready(self.coordinator, self.metrics_url, READY_TIMEOUT_S, lambda s, _b: s == 200)

    def kill_coordinator(self) -> None:
        child = self._take_coordinator()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.proc.pid, signal.SIGKILL)
        child.proc.wait(EXIT_TIMEOUT_S)
        self.children.forget(child)

    def term_coordinator(self) -> int:
        """SIGTERM; its exit status (a coordinator that does not exit in time is killed: -9)."""
        child = self._take_coordinator()
        child.proc.send_signal(signal.SIGTERM)
        try:
            code = child.proc.wait(EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(child.proc.pid, signal.SIGKILL)
            child.proc.wait(EXIT_TIMEOUT_S)
            code = -9
            self.figures.problems.append(f"{self.scenario}: SIGTERM did not stop the coordinator in time")
        self.children.forget(child)
        return int(code)

    def _take_coordinator(self) -> Child:
        child, self.coordinator = self.coordinator, None
        if child is None:
            raise RuntimeError("the coordinator is not running")
        return child

    # views
    def venue(self) -> Venue:
        return read_venue(self.home.root / "paper_exchange.db")

    def journal(self) -> Journal:
        return read_journal(self.home.database)

    def xylen(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "xylen", "--home", str(self.home.root), *args],
            env=self.env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    def wait(self, what: str, check: Callable[[], bool], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.alive()
            if check():
                return True
            time.sleep(POLL_S)
        return False

    def trade_for_a_while(self) -> None:
        """A random 1-5 s, or (one trial in three) until the coordinator writes a new entry."""
        if self.rng.random() < 1 / 3:
            before = self.journal().entries()
            self.wait("a new entry", lambda: self.journal().entries() > before, 20.0)
        else:
            time.sleep(self.rng.uniform(1.0, 5.0))
            self.alive()

    # checks
    def check_at_kill(self, label: str) -> Venue:
        venue, journal = self.venue(), self.journal()
        found = lost_objects(venue, journal, self.forgotten)
        self._count(label + " at the kill", found.lost, phantoms(venue, journal), duplicates(venue))
        self.figures.unrecorded_fills_at_kill += len(found.unrecorded_fills)
        self.figures.unprotected_at_kill += len(venue.unprotected())
        return venue

    def check_after_restart(self, label: str) -> None:
        first = self.venue()
        time.sleep(self.monitor_round_s)
        journal = self.journal()
        second = self.venue()
        found = lost_objects(first, journal, self.forgotten)
        lost = found.lost + [f"lost: {t} (not in SQLite after restart)" for t in found.unrecorded_fills]
        self._count(label + " after restart", lost, phantoms(second, journal), duplicates(second))
        self.figures.positions_checked += len(second.positions)
        for position in second.unprotected():
            if position in first.unprotected():
                self.figures.unprotected += 1
                self.figures.problems.append(
                    f"{label} after restart: position {position.amount} @ {position.entry_price} has no stop"
                    f" {self.monitor_round_s:.1f} s after the coordinator was ready"
                )
        self.figures.orders, self.figures.trades = len(second.orders), len(second.trades)

    def _count(self, label: str, lost: list[str], phantom: list[str], dup: list[str]) -> None:
        self.figures.lost += len(lost)
        self.figures.phantom += len(phantom)
        self.figures.duplicated += len(dup)
        self.figures.problems.extend(f"{label}: {p}" for p in (*lost, *phantom, *dup))

    # the trials
    def trial(self, number: int) -> None:
        label = f"{self.scenario} #{number}"
        if self.scenario == "restore":
            self._restore_trial(label)
        elif self.scenario == "sigterm":
            self._sigterm_trial(label)
        else:
            self.trade_for_a_while()
            self.kill_coordinator()
            self.check_at_kill(label)
        self._count_rate_limits()
        self.start_coordinator()
        self.check_after_restart(label)
        self.figures.trials += 1

    def _restore_trial(self, label: str) -> None:
        """The backup is taken while a position is open (its intent goes stale in the backup), and the
        coordinator stopped while a position opened after the backup is open with its bracket."""
        if not self.wait("an open position", lambda: bool(self.venue().positions), 40.0):
            self.figures.problems.append(f"{label}: no position within 40 s before the backup")
        made = self.xylen("db", "backup")
        backup = Path(made.stdout.strip().rsplit(" ", 1)[-1]) if made.returncode == 0 else None
        if backup is None or not backup.is_file():
            raise RuntimeError(f"{label}: xylen db backup failed ({made.returncode}): {made.stderr.strip()}")
        known = set(read_journal(backup).orders)

        def new_position() -> bool:
            venue = self.venue()
            return bool(venue.positions) and any(
                o.status == "FILLED" and o.cid not in known and o.cid.endswith("-e1")
                and self._open_entry(venue, o.cid)
                for o in venue.orders
            )  # fmt: skip

        if not self.wait("a position opened after the backup", new_position, 60.0):
            self.figures.problems.append(f"{label}: no position opened after the backup within 60 s")
        refused = self.xylen("db", "restore", "--from", str(backup), "--yes")
        if refused.returncode == 0:
            self.figures.refusals_missing += 1
            self.figures.problems.append(
                f"{label}: xylen db restore replaced the database of a running coordinator"
            )
        self.figures.exits[self.term_coordinator()] += 1
        self.check_at_kill(label)
        done = self.xylen("db", "restore", "--from", str(backup), "--yes")
        if done.returncode != 0:
            raise RuntimeError(f"{label}: xylen db restore failed ({done.returncode}): {done.stderr.strip()}")
        venue, restored = self.venue(), self.journal()
        forgotten = {cid for cid in venue.ours() if cid not in restored.orders}
        self.figures.forgotten_by_restore += len(forgotten - self.forgotten)
        self.forgotten |= forgotten

    @staticmethod
    def _open_entry(venue: Venue, entry_cid: str) -> bool:
        """``entry_cid``'s bracket is still open on the venue (its position not closed yet)."""
        intent = entry_cid.rsplit("-", 1)[0]
        return any(a.status == "NEW" and a.cid.startswith(intent + "-s") for a in venue.algos)

    def _sigterm_trial(self, label: str) -> None:
        def stop_in_flight() -> bool:
            return any(o.kind == "stop_loss" and o.state in IN_FLIGHT for o in self.journal().orders.values())

        time.sleep(self.rng.uniform(0.5, 2.0))
        if self.wait("a stop in flight", stop_in_flight, 40.0):
            self.figures.stops_in_flight += 1
        else:
            self.figures.problems.append(f"{label}: no stop in flight within 40 s; plain SIGTERM")
        code = self.term_coordinator()
        self.figures.exits[code] += 1
        venue = self.check_at_kill(label)
        if code == 0 and venue.unprotected():
            self.figures.refusals_missing += 1
            self.figures.problems.append(
                f"{label}: SIGTERM exited 0 leaving {[p.amount for p in venue.unprotected()]} without a stop"
            )

    def _count_rate_limits(self) -> None:
        log = self.home.root / "logs" / "coordinator.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        self.figures.rate_limited = Counter(
            {"429": text.count("rate limited (429)"), "418": text.count("rate limited (418 ban)")}
        )


def run_scenario(
    scenario: str, trials: int, root: Path, candles: Path, model: Path, speed: float, seed: int,
    log: Callable[[str], None] = print,
) -> Figures:  # fmt: skip
    """``trials`` trials of ``scenario`` on a fresh exchange and home under ``root``."""
    if scenario == "foreign" and not foreign_weight_supported():
        figures = Figures(skipped="the paper exchange has no foreign_weight_per_s fault")
        log(f"{scenario}: skipped ({figures.skipped})")
        return figures
    rig = CrashRig(root, candles, model, scenario, speed, seed)
    started = time.monotonic()
    try:
        rig.start()
        for number in range(1, trials + 1):
            rig.trial(number)
    except Exception as exc:  # a trial that cannot go on is a failure with its reason, not a crash
        rig.figures.refusals_missing += 1
        rig.figures.problems.append(f"{scenario}: stopped after {rig.figures.trials} trial(s): {exc!r}")
    finally:
        rig.close()
    log(f"{scenario}: {rig.figures.line()} ({time.monotonic() - started:.0f} s)")
    return rig.figures


@contextlib.contextmanager
def work_dir(root: Path | None) -> Iterator[Path]:
    """``root`` or a temporary folder removed afterwards."""
    if root is not None:
        root.mkdir(parents=True, exist_ok=True)
        yield root
        return
    import tempfile

    with tempfile.TemporaryDirectory(prefix="xylen-coordinator-crash-") as tmp:
        yield Path(tmp)
