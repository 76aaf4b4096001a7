"""The whole system as real processes on 127.0.0.1, for 200+ beats at high speed, with crashes.

The processes are started as ``xylen demo`` starts them (:mod:`xylen.demo_services`): the paper
exchange replaying the real BTCUSDT 5m candles at :data:`SPEED` x wall time, three model servers
(LightGBM and ONNX serving a small model trained by ``xylen train`` at the start, River learning
online) and the coordinator (``xylen run``) on the accelerated clock at the same speed: a beat every
``300 / SPEED`` = 0.4 wall seconds.  Faster is possible on an idle machine, but the paper exchange
enforces Binance's REQUEST_WEIGHT limit (2400 per wall minute) and a beat costs about 13 weight
(klines, premiumIndex, ticker, balance, positionRisk): at 0.3 s a beat the coordinator needs ~2700 a
minute, gets 429s and pauses every request for seconds; at 0.4 s it needs ~2000.

Trading on purpose: with real costs, real models HOLD (their edge is too small), so the coordinator
runs the config of ``xylen demo --show-trades`` (:func:`xylen.demo_services.show_trades`): its cost
model is zero (fees and slippage 0 bps; the paper exchange still charges its own), ``ensemble.min_edge``
is 0 and the disagreement gate wide, and the loss breakers and cooldown are widened so that a losing
streak in the replay does not stop the trading this test needs to see.  Nothing is stubbed.

Steps:

1. start everything; wait for beats and a first entry;
2. SIGKILL the LightGBM model server: the beats go on, deciding with the two others, the dead
   server's votes journaled as ``error``/``timeout``; restart it on the same port: its votes come
   back (``ok``) within a few beats;
3. once 100+ beats are journaled, SIGKILL the coordinator the moment it writes a new entry order
   to SQLite (before or while it sends it); restart it on the same home: it reconciles (a second
   ``reconciliation_runs`` row), any open position has its stop and take-profit, and it beats on;
4. at 200+ beats: Prometheus metrics over HTTP (beats, votes, decisions, equity); SIGTERM: exit 0
   within 10 s;
5. the checks against SQLite and the exchange's REST API (below).

"Every beat logged", across a SIGKILL: every beat the coordinator ran is in the journal (snapshot,
one vote per server, decision: written in one transaction, so all or none), i.e. the journal's rows
of each life match the beats the coordinator counted (Prometheus ``xylen_beat_duration_seconds``
and its log's ``beat N`` numbering, 1..N without gaps); the beat in progress at the SIGKILL may be
lost whole, never in part.  In candle time, each life's beats step one 5m candle at a time (a beat
that overran its slot on a loaded machine leaves a candle without a beat; counted and bounded);
between the two lives exactly the candles that closed while no coordinator ran are missing.  The
coordinator's accelerated clock starts at the replay time (``premiumIndex.time``), so each beat falls
just after a candle closes and no candle is decided twice.

SQLite against the exchange after the run: every order SQLite knows is on the exchange with the
same status and executed quantity (or absent, for orders refused before sending), every open order
on the exchange is in SQLite, every fill on the exchange is in SQLite's ``fills`` (same quantity and
price) and vice versa, every order id that traded maps to exactly one SQLite order, no intent's
entry filled twice, the position equals the fills, and an open position has its stop and
take-profit on the exchange.  Protective orders keep working after the coordinator stops, so an
order that changed on the exchange after the SIGTERM (``updateTime`` later than the exchange time
read just before it) is allowed to differ; everything older must agree exactly.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from e2e_support import FINAL_STATES, ExchangeApi, JournalView, metric, scrape, wait_until

from coordinator.tests.test_exchange_support import candles  # noqa: F401 - fixture
from xylen.demo_services import (
    SERVERS,
    Child,
    Children,
    demo_config,
    ensure_model,
    free_port,
    health_ok,
    start_coordinator,
    start_model_server,
    start_paper_exchange,
    wait_ready,
)
from xylen.paths import Home

SYMBOL = "BTCUSDT"
SPEED = 750.0  # replay and clock speed: a 5-minute beat every 0.4 wall seconds (module docstring)
STEP_MS = 300_000
TOTAL_BEATS = 200
KILL_COORDINATOR_AT = 100  # journaled beats before the coordinator is SIGKILLed
KEY, SECRET = "e2e-key", "e2e-secret"
VICTIM = "lgbm"
ALGO_TYPES = frozenset({"STOP_MARKET", "TAKE_PROFIT_MARKET", "STOP", "TAKE_PROFIT", "TRAILING_STOP_MARKET"})
MAX_UNBEATEN_CANDLES = 10  # per life: slots lost to beats that overran them on a loaded machine
BEAT_LINE = re.compile(r"^beat (\d+): ")
LIFE_SEPARATOR = "--- xylen demo "
DASHBOARD_TOKEN = "e2e-dashboard-token-4f1c"


@dataclass
class System:
    """The running processes and the views of them."""

    home: Home
    children: Children
    api: ExchangeApi
    journal: JournalView
    config_path: Path
    metrics_url: str
    ports: dict[str, int]
    notes: list[str] = field(default_factory=list)

    def alive(self) -> None:
        for child in self.children.children:
            child.check_alive()

    def child(self, name: str) -> Child:
        return next(c for c in self.children.children if c.name == name)

    def child_log(self, name: str) -> Path:
        return self.home.root / "logs" / f"{name}.log"

    def note(self, line: str) -> None:
        self.notes.append(line)
        print(line, flush=True)


def _config(
    exchange_port: int, servers: dict[str, int], metrics_port: int, dashboard_port: int
) -> dict[str, Any]:
    """The demo's coordinator config at :data:`SPEED`, made to trade (module docstring)."""
    config = demo_config(SYMBOL, exchange_port, servers, metrics_port, dashboard_port, trade_freely=True)
    config["model_servers"] = [
        {"id": f"e2e-{name}", "url": f"http://127.0.0.1:{port}", "timeout_ms": 1000}
        for name, port in servers.items()
    ]
    config["heartbeat"].update(speed=SPEED, deadline_seconds=240.0)  # 0.8 x 0.4 s real
    config["market"]["history_candles"] = 1000
    config["exchange"].update(request_timeout_seconds=5.0, poll_interval_seconds=5.0)  # wall seconds
    config["logging"] = {"level": "INFO", "format": "json"}
    return config


@pytest.fixture
def system(tmp_path: Path, candles: Path) -> Iterator[System]:  # noqa: F811 - fixture
    """Everything started (exchange, three model servers, coordinator); all stopped afterwards."""
    home = Home(tmp_path / "home")
    home.root.mkdir()
    (home.root / "candles").symlink_to(candles, target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if k not in {"XYLEN_HOME", "NOTIFY_SOCKET", "WATCHDOG_USEC"}}
    env.update(
        XYLEN_PAPER_API_KEY=KEY, XYLEN_PAPER_API_SECRET=SECRET, XYLEN_MODEL_TOKEN="e2e-model-token",
        XYLEN_DASHBOARD_TOKEN=DASHBOARD_TOKEN,
        TRAINING_INTERVAL="0", PYTHONUNBUFFERED="1",
    )  # fmt: skip
    children = Children(home, env)
    try:
        ensure_model(children, SYMBOL, print)
        exchange, exchange_port = start_paper_exchange(children, SYMBOL, SPEED, None, "--tick-ms", "20")
        servers: dict[str, int] = {}
        for name, backend in SERVERS:
            servers[name] = start_model_server(children, name, backend)[1]
        wait_ready(exchange, f"http://127.0.0.1:{exchange_port}/fapi/v1/ping", 60, lambda s, _b: s == 200)
        for name, _backend in SERVERS:
            child = next(c for c in children.children if c.name == f"model-server-{name}")
            wait_ready(child, f"http://127.0.0.1:{servers[name]}/health", 90, health_ok)
        metrics_port, dashboard_port = free_port(), free_port()
        config_path = home.root / "e2e-config.yaml"
        config = _config(exchange_port, servers, metrics_port, dashboard_port)
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        system = System(
            home,
            children,
            ExchangeApi(f"http://127.0.0.1:{exchange_port}", KEY, SECRET),
            JournalView(home.database),
            config_path,
            f"http://127.0.0.1:{metrics_port}/metrics",
            {"exchange": exchange_port, "metrics": metrics_port, "dashboard": dashboard_port, **servers},
        )
        start_coordinator(children, config_path)
        yield system
    finally:
        pids = [c.proc.pid for c in children.children]
        children.stop_all()
        for pid in pids:
            assert _gone(pid), f"process {pid} still running after the test"


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _beats_logged(log: Path) -> list[list[int]]:
    """``beat N`` numbers of the coordinator's log, one list per life (the demo's separator line)."""
    lives: list[list[int]] = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith(LIFE_SEPARATOR):
            lives.append([])
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        match = BEAT_LINE.match(str(record.get("msg", "")))
        if match and lives:
            lives[-1].append(int(match.group(1)))
    return lives


def _kill_and_restart_model_server(system: System) -> None:
    """Step 2: SIGKILL one model server, beats go on with the others; restart, it rejoins."""
    victim = system.child(f"model-server-{VICTIM}")
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait(10)
    system.children.forget(victim)
    killed_at = system.journal.max_rowid()
    system.note(f"model server {VICTIM} SIGKILLed after beat row {killed_at}")
    model_id = f"e2e-{VICTIM}"
    # the beat in flight at the kill may still have its vote: look from the one after it
    after = wait_until(
        "8 beats without the dead model server",
        lambda: v if len(v := system.journal.votes_after(killed_at + 1, model_id)) >= 8 else None,
        30,
        system.alive,
    )
    assert set(after) <= {"error", "timeout"}, after
    upto = system.journal.max_rowid()
    others = system.journal.rows(
        "SELECT s.rowid, SUM(p.status = 'ok') FROM snapshots s JOIN model_predictions p USING (beat_id)"
        " WHERE s.rowid > ? AND s.rowid <= ? AND p.model_id != ? GROUP BY s.rowid",
        (killed_at + 1, upto, model_id),
    )
    decided = system.journal.scalar(
        "SELECT COUNT(*) FROM snapshots s JOIN decisions d USING (beat_id)"
        " WHERE s.rowid > ? AND s.rowid <= ?",
        (killed_at + 1, upto),
    )
    assert decided == len(others) >= 8
    both = sum(1 for _rowid, ok in others if ok == 2)
    assert both >= 0.8 * len(others), others  # the two live servers kept voting

    child, _port = start_model_server(system.children, VICTIM, dict(SERVERS)[VICTIM], system.ports[VICTIM])
    wait_ready(child, f"http://127.0.0.1:{system.ports[VICTIM]}/health", 90, health_ok)
    restarted_at = system.journal.max_rowid()
    started = time.monotonic()
    wait_until(
        f"{model_id}'s votes to come back",
        lambda: "ok" in system.journal.votes_after(restarted_at, model_id),
        60,
        system.alive,
    )
    rejoin_beats = len(system.journal.votes_after(restarted_at, model_id))
    system.note(
        f"model server {VICTIM}: {len(after)}+ beats decided without it; restarted, voting again after"
        f" {rejoin_beats} beats ({time.monotonic() - started:.1f} s, the client's health-probe backoff)"
    )
    samples = scrape(system.metrics_url)
    assert metric(samples, "xylen_votes_total", server=model_id, status="ok") > 0
    missed = sum(
        metric(samples, "xylen_votes_total", server=model_id, status=s)
        for s in ("error", "timeout", "deadline", "backoff")
    )
    assert missed >= len(after), samples


def _kill_coordinator_after_an_entry(system: System) -> tuple[int, int]:
    """Step 3a: SIGKILL the coordinator when it writes a new entry order; (rows of life 1, exchange ms)."""
    wait_until(f"{KILL_COORDINATOR_AT} beats", lambda: system.journal.beats() >= KILL_COORDINATOR_AT, 120,
               system.alive)  # fmt: skip
    entries = system.journal.entries()
    wait_until("a new entry order", lambda: system.journal.entries() > entries, 120, system.alive)
    coordinator = system.child("coordinator")
    coordinator.proc.send_signal(signal.SIGKILL)
    assert coordinator.proc.wait(10) == -signal.SIGKILL
    system.children.forget(coordinator)
    killed_ms = system.api.replay_time(SYMBOL)
    rows = system.journal.beats()
    states = system.journal.rows("SELECT kind, state FROM orders ORDER BY created_ms DESC LIMIT 3")
    system.note(f"coordinator SIGKILLed after {rows} journaled beats; newest orders then: {states}")
    return rows, killed_ms


def _restart_coordinator(system: System) -> int:
    """Step 3b: the coordinator on the same home: reconciles, protects any position, beats on."""
    coordinator = start_coordinator(system.children, system.config_path)
    wait_ready(coordinator, system.metrics_url, 90, lambda s, _b: s == 200)
    runs = system.journal.rows(
        "SELECT run_id, finished_ms, differences FROM reconciliation_runs ORDER BY run_id"
    )
    assert len(runs) == 2 and all(r[1] is not None for r in runs), runs  # one per start, both finished
    report = system.journal.rows(
        "SELECT kind, client_order_id, resolution FROM reconciliation_report WHERE run_id = ?", (runs[1][0],)
    )
    system.note(f"reconciliation after the SIGKILL: {runs[1][2]} difference(s) {report}")
    assert all(resolution for _kind, _cid, resolution in report)
    _assert_position_protected(system.api)
    return system.api.replay_time(SYMBOL)


def _assert_position_protected(api: ExchangeApi) -> None:
    """An open position has one stop and one take-profit (closePosition) open on the exchange."""
    for _attempt in range(3):  # a leg may fire between the two reads: then read again
        before = api.position(SYMBOL)
        algos = api.open_algo_orders(SYMBOL)
        if before == 0 or api.position(SYMBOL) != before:
            continue
        kinds = Counter(a["orderType"] for a in algos if a["closePosition"])
        assert kinds == Counter({"STOP_MARKET": 1, "TAKE_PROFIT_MARKET": 1}), (before, algos)
        return


def _algo_matches(state: str, executed: Decimal, reply: dict[str, Any]) -> bool:
    status = str(reply["algoStatus"])
    actual = Decimal(reply.get("actualQty") or "0")
    if state == "NEW":
        return status == "NEW"
    if state == "FILLED":
        return status in {"FINISHED", "TRIGGERED"} and actual == executed > 0
    if state == "CANCELED":
        return status == "CANCELED" or (status == "FINISHED" and actual == 0)
    if state == "EXPIRED":
        return status == "EXPIRED"
    return False


def _order_matches(state: str, executed: Decimal, reply: dict[str, Any]) -> bool:
    return bool(reply["status"] == state and Decimal(reply["executedQty"]) == executed)


def _check_orders_against_exchange(system: System, term_ms: int) -> dict[str, int]:
    """SQLite's orders and fills against the exchange's (module docstring); returns counts."""
    api, journal = system.api, system.journal
    orders = journal.rows(
        "SELECT client_order_id, intent_id, kind, type, state, executed_qty, exchange_order_id FROM orders"
    )
    assert orders
    states = Counter(r[4] for r in orders)
    assert not set(states) & {"PENDING", "SUBMITTED", "UNKNOWN"}, states  # nothing left in doubt
    moved_after_stop: list[str] = []
    by_exchange_id: dict[str, str] = {}
    for cid, _intent, kind, type_, state, executed_text, exchange_id in orders:
        executed = Decimal(executed_text)
        algo = type_ in ALGO_TYPES
        reply = api.algo_order(cid) if algo else api.order(SYMBOL, cid)
        if state in {"REJECTED", "NOT_FOUND"}:
            assert reply is None or reply.get("status", reply.get("algoStatus")) in {"REJECTED", "EXPIRED"}, (
                cid, state, reply,
            )  # fmt: skip
            continue
        assert reply is not None, f"{kind} {cid} ({state} in SQLite) is not on the exchange"
        matches = _algo_matches(state, executed, reply) if algo else _order_matches(state, executed, reply)
        if not matches:
            changed_ms = int(reply.get("updateTime") or 0)
            assert state not in FINAL_STATES and changed_ms >= term_ms, (
                f"{kind} {cid}: SQLite {state} {executed}, exchange {reply}"
            )
            moved_after_stop.append(cid)
        venue_id = str(reply.get("actualOrderId") or "") if algo else str(reply["orderId"])
        if venue_id:
            if exchange_id is not None:
                assert exchange_id == venue_id, (cid, exchange_id, reply)
            assert venue_id not in by_exchange_id, (
                f"orders {by_exchange_id[venue_id]} and {cid} share {venue_id}"
            )
            by_exchange_id[venue_id] = cid
    known = {r[0]: r[4] for r in orders}
    for open_order in api.open_orders(SYMBOL):
        assert known.get(open_order["clientOrderId"]) in {"NEW", "PARTIALLY_FILLED"}, open_order
    for open_algo in api.open_algo_orders(SYMBOL):
        assert known.get(open_algo["clientAlgoId"]) == "NEW", open_algo

    # fills: the same on both sides, nothing lost or doubled
    trades = {int(t["id"]): t for t in api.user_trades(SYMBOL)}
    fills = {
        int(r[0]): r
        for r in journal.rows("SELECT trade_id, client_order_id, qty, price, exchange_order_id FROM fills")
    }
    late = {i for i, t in trades.items() if i not in fills}
    assert all(int(trades[i]["time"]) >= term_ms for i in late), [trades[i] for i in late]
    assert set(fills) <= set(trades), set(fills) - set(trades)
    for trade_id, (_id, cid, qty, price, _exchange_id) in fills.items():
        trade = trades[trade_id]
        assert (Decimal(trade["qty"]), Decimal(trade["price"])) == (Decimal(qty), Decimal(price)), (
            cid,
            trade,
        )
        assert by_exchange_id.get(str(trade["orderId"])) == cid, (cid, trade)
    signed = {"BUY": Decimal(1), "SELL": Decimal(-1)}
    expected = sum((signed[t["side"]] * Decimal(t["qty"]) for t in trades.values()), Decimal(0))
    assert api.position(SYMBOL) == expected

    # entries: one per intent, filled at most once
    entry_fills = journal.rows(
        "SELECT o.intent_id, COUNT(DISTINCT o.client_order_id), SUM(CAST(o.executed_qty AS REAL) > 0)"
        " FROM orders o WHERE o.kind = 'entry' GROUP BY o.intent_id"
    )
    assert all(filled <= 1 for _intent, _n, filled in entry_fills), entry_fills
    # entries go in as the default trading.entry, maker_preferred: a post-only LIMIT first, a MARKET
    # fallback only in place of a maker entry that timed out unfilled (or would have taken)
    makers = journal.rows(
        "SELECT m.status, o.type, o.executed_qty, f.type FROM maker_entries m"
        " JOIN orders o USING (client_order_id)"
        " LEFT JOIN orders f ON f.client_order_id = m.fallback_client_order_id"
    )
    assert makers and all(m[1] == "LIMIT" for m in makers), makers
    assert all((m[0] == "fallback") == (m[3] is not None) for m in makers), makers
    assert all(m[3] in {None, "MARKET"} for m in makers), makers
    assert all(Decimal(m[2]) == 0 for m in makers if m[0] in {"fallback", "abandoned", "unfilled"}), makers
    assert sum(m[0] == "pending" for m in makers) <= 1, makers  # at most the newest, at the SIGTERM
    markets = journal.scalar("SELECT COUNT(*) FROM orders WHERE kind = 'entry' AND type = 'MARKET'")
    assert markets == sum(m[0] == "fallback" for m in makers), (markets, makers)
    _assert_position_protected(api)
    return {
        "orders": len(orders),
        "entries": sum(1 for r in orders if r[2] == "entry"),
        "entries filled": sum(1 for r in orders if r[2] == "entry" and Decimal(r[5]) > 0),
        "fills": len(fills),
        "changed after SIGTERM": len(moved_after_stop),
        "fills after SIGTERM": len(late),
        **{f"maker {status}": n for status, n in sorted(Counter(m[0] for m in makers).items())},
    }


def _check_journal(
    system: System, life1_rows: int, killed_ms: int, restarted_ms: int, counted_life2: int
) -> dict[str, int]:
    """Every beat logged (module docstring); returns counts."""
    journal = system.journal
    rows = journal.rows("SELECT rowid, beat_id, ts_ms FROM snapshots ORDER BY rowid")
    per_beat = journal.rows(
        "SELECT s.beat_id, COUNT(DISTINCT p.model_id), COUNT(p.id), COUNT(DISTINCT d.beat_id)"
        " FROM snapshots s LEFT JOIN model_predictions p USING (beat_id)"
        " LEFT JOIN decisions d USING (beat_id)"
        " GROUP BY s.beat_id"
    )
    assert len(per_beat) == len(rows) >= TOTAL_BEATS
    assert all(r[1:] == (3, 3, 1) for r in per_beat), [r for r in per_beat if r[1:] != (3, 3, 1)]
    assert journal.scalar("SELECT COUNT(*) FROM decisions") == len(rows)

    lives = _beats_logged(system.child_log("coordinator"))
    assert len(lives) == 2, [len(life) for life in lives]
    for life in lives:
        assert life == list(range(1, len(life) + 1)), life  # numbered without gaps
    assert life1_rows in {len(lives[0]), len(lives[0]) + 1}  # + the beat in progress at the SIGKILL
    assert len(rows) - life1_rows == len(lives[1]) == counted_life2

    times = [r[2] for r in rows]
    assert all(b >= a and (b - a) % STEP_MS == 0 for a, b in itertools.pairwise(times)), times
    first, second = times[:life1_rows], times[life1_rows:]
    # candles a life spanned without a beat: beats that overran their slot (bounded), or beats lost
    unbeaten = [(life[-1] - life[0]) // STEP_MS + 1 - len(life) for life in (first, second)]
    assert all(0 <= n <= MAX_UNBEATEN_CANDLES for n in unbeaten), unbeaten
    repeats = sum(b == a for life in (first, second) for a, b in itertools.pairwise(life))
    assert repeats == 0, "a candle decided twice: the clock is not anchored at the replay time"
    # between the lives: only candles closing while no coordinator ran (plus the beat in progress)
    assert killed_ms - 3 * STEP_MS <= first[-1] < second[0] <= restarted_ms + STEP_MS, (
        first[-1], killed_ms, second[0], restarted_ms,
    )  # fmt: skip
    return {
        "beats": len(rows),
        "life 1": life1_rows,
        "life 2": len(rows) - life1_rows,
        "candles without a beat in the lives": sum(unbeaten),
        "candles decided twice": repeats,
        "candles missed while down": (second[0] - first[-1]) // STEP_MS - 1,
    }


async def _watch_dashboard(port: int) -> dict[str, int]:
    """The running coordinator's dashboard feed: refused without the token; with it a snapshot of
    the three model servers, the recent decisions and equity, then a ``beat`` message per beat; the
    history API answers; no message carries the token."""
    base = f"http://127.0.0.1:{port}"
    timeout = aiohttp.ClientTimeout(total=20)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.get(f"{base}/ws") as refused:
            assert refused.status == 401, refused.status
        texts: list[str] = []
        async with session.ws_connect(f"{base}/ws?token={DASHBOARD_TOKEN}", heartbeat=None) as ws:
            texts.append(await ws.receive_str(timeout=10))
            snapshot = json.loads(texts[-1])
            assert snapshot["type"] == "snapshot", snapshot["type"]
            servers = sorted(m["server_id"] for m in snapshot["models"])
            assert servers == [f"e2e-{name}" for name, _backend in sorted(SERVERS)], servers
            assert snapshot["decisions"] and snapshot["equity"], snapshot
            beats = 0
            while beats < 3:
                texts.append(await ws.receive_str(timeout=10))
                message = json.loads(texts[-1])
                if message["type"] == "beat":
                    assert message["decisions"] and message["ts"] >= snapshot["ts"], message
                    beats += 1
        async with session.get(f"{base}/api/decisions?limit=5&token={DASHBOARD_TOKEN}") as reply:
            assert reply.status == 200, await reply.text()
            history = (await reply.json())["decisions"]
    assert history and all(DASHBOARD_TOKEN not in text for text in texts)
    return {"messages": len(texts), "beat messages": beats, "decisions via /api": len(history)}


@pytest.mark.slow
def test_system_200_beats_with_a_dead_model_server_and_a_killed_coordinator(system: System) -> None:
    started = time.monotonic()
    # 1. beats and a first entry
    wait_until("10 beats and an entry", lambda: system.journal.beats() >= 10 and system.journal.entries() > 0,
               90, system.alive)  # fmt: skip
    # 2. a model server dies and comes back
    _kill_and_restart_model_server(system)
    # 3. the coordinator dies right after deciding an entry, and comes back
    life1_rows, killed_ms = _kill_coordinator_after_an_entry(system)
    restarted_ms = _restart_coordinator(system)
    wait_until(f"{TOTAL_BEATS} beats", lambda: system.journal.beats() >= TOTAL_BEATS + 5, 120, system.alive)
    # 4. metrics, then SIGTERM
    before = system.journal.beats() - life1_rows
    samples = scrape(system.metrics_url)
    after = system.journal.beats() - life1_rows
    counted = metric(samples, "xylen_beat_duration_seconds_count")
    assert before - 1 <= counted <= after, (before, counted, after)  # the journal row comes first
    for name, _backend in SERVERS:
        assert metric(samples, "xylen_votes_total", server=f"e2e-{name}", status="ok") > 0, name
    assert metric(samples, "xylen_decisions_total") >= counted
    assert metric(samples, "xylen_equity_usd") > 0
    figures = {
        name.removeprefix("xylen_"): round(metric(samples, name), 2)
        for name in ("xylen_votes_total", "xylen_decisions_total", "xylen_orders_total", "xylen_equity_usd",
                     "xylen_exchange_errors_total", "xylen_rate_limit_weight_used")
    }  # fmt: skip
    system.note(f"metrics of life 2 after {counted:.0f} beats: {figures}")
    dashboard = asyncio.run(_watch_dashboard(system.ports["dashboard"]))
    system.note(f"dashboard feed: {dashboard}")
    term_ms = system.api.replay_time(SYMBOL)
    coordinator = system.child("coordinator")
    t0 = time.monotonic()
    coordinator.proc.send_signal(signal.SIGTERM)
    assert coordinator.proc.wait(10) == 0  # TimeoutExpired fails the test too
    stop_s = time.monotonic() - t0
    system.children.forget(coordinator)
    # 5. the checks
    counted_life2 = _beats_logged(system.child_log("coordinator"))[-1][-1]
    journal = _check_journal(system, life1_rows, killed_ms, restarted_ms, counted_life2)
    orders = _check_orders_against_exchange(system, term_ms)
    trades = system.journal.scalar("SELECT COUNT(*) FROM trades")
    closed = system.journal.scalar(
        "SELECT COUNT(DISTINCT i.intent_id) FROM intents i JOIN orders o USING (intent_id)"
        " WHERE i.status = 'CLOSED' AND o.kind = 'entry' AND CAST(o.executed_qty AS REAL) > 0"
    )
    assert orders["entries filled"] >= 3 and trades >= 2, (orders, trades)
    assert closed - 1 <= trades <= closed  # one round trip per closed intent (the last may be unsettled)
    system.note(
        f"journal {journal}; orders {orders}; {trades} round trips closed; SIGTERM exit 0 in {stop_s:.1f} s;"
        f" {time.monotonic() - started:.0f} s"
    )
