"""The order manager's crash test: a worker placing brackets is SIGKILLed at random moments.

``python -m coordinator.tests.manager_crash_worker URL DB SEED`` is the worker: it starts a
``FuturesExchange`` on the paper exchange at ``URL`` (reconciling ``DB`` first), prints ``ready``
and then trades BTCUSDT forever -- brackets with MARKET or LIMIT entries, stops and take-profits
close to the price so some fire on the replay, and reduce-only closes -- until it is killed.

:func:`run_trials` is the harness shared by ``test_manager_crash.py`` (10 trials) and
``bench/bench_orders_crash.py`` (100): the paper exchange runs as its own process (it must
survive the kills) with the replies that may have executed mixed in (:data:`CRASH_FAULTS`: a 2xx
placement reply with an unreadable body, a cancel acknowledged ``CANCELED`` while the order
fills, a 503 "Unknown error" after execution; ``faults=False`` for none), and after each kill
the harness restarts the manager, reconciles, and checks
against the exchange: no order lost (every exchange order with our prefix is in SQLite), none
duplicated (one entry per intent, one exchange order per client id, one stop per position), and
every open position has its stop on the exchange.  A resting LIMIT entry may fill on the replay
between that reconciliation and the check; its bracket is then the running monitor's job, so the
check does one round of it (poll, follow-ups, sweep) before it looks again, and counts such cases.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from coordinator.exchange.errors import RetryableError
from coordinator.exchange.facade import FuturesExchange
from coordinator.exchange.schemas import AlgoOrder, Position
from coordinator.orders import Order, OrderKind, Side, is_ours
from coordinator.orders.manager import SymbolBusy
from coordinator.orders.store import OrderStore
from xylen.config.schema import ExchangeConfig
from xylen.config.secrets import Secrets

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
SYMBOL = "BTCUSDT"
CRASH_FAULTS = (
    "seed: 11\n"
    "unreadable_reply_rate: 0.1\n"  # placements: executed, reply cut in half
    "fill_after_cancel_rate: 0.5\n"  # cancels of resting orders: CANCELED reply, the order fills
    "unknown_error_rate: 0.05\n"  # order endpoints: executed, 503 Unknown error
)


def config(url: str) -> ExchangeConfig:
    return ExchangeConfig(paper_url=url, request_timeout_seconds=5.0, poll_interval_seconds=1.0)


# -- the worker ------------------------------------------------------------------------------------
async def trade_forever(url: str, db: str, seed: int) -> None:
    """Reconcile, say ``ready``, then place and close brackets until killed."""
    rng = random.Random(seed)
    for attempt in range(10):  # the verifier may have used the minute's weight: wait for it
        try:
            exchange = await FuturesExchange.create(config(url), Secrets(), db, symbols=[SYMBOL])
            break
        except RetryableError as exc:
            if attempt == 9:
                raise
            await asyncio.sleep(exc.retry_after_s or 1.0)
    async with exchange:
        print("ready", flush=True)
        while True:
            await asyncio.sleep(rng.uniform(0.0, 0.05))
            intents = exchange.store.open_intents()
            if intents:
                if rng.random() < 0.05:
                    entries = [
                        o
                        for o in exchange.store.orders_of_intent(intents[0].intent_id)
                        if o.kind is OrderKind.ENTRY and not o.is_final
                    ]
                    for entry in entries:  # a resting entry the price left behind
                        await exchange.cancel_order(entry.client_order_id)
                    await exchange.close_position(SYMBOL)
                continue
            mark = await exchange.mark_price(SYMBOL)
            side = rng.choice([Side.BUY, Side.SELL])
            sign = 1 if side is Side.BUY else -1
            stop = mark * (1 - sign * Decimal(rng.uniform(0.002, 0.006)))
            take = mark * (1 + sign * Decimal(rng.uniform(0.002, 0.006)))
            qty = Decimal(rng.choice(["0.003", "0.004", "0.006"]))
            limit = rng.random() < 0.4
            price = mark * (1 - sign * Decimal("0.0005")) if limit else None
            with contextlib.suppress(SymbolBusy):
                await exchange.place_order(
                    SYMBOL, side, qty, stop, take, order_type="LIMIT" if limit else "MARKET", price=price
                )


# -- the harness -----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def paper_exchange_process(
    candles: Path, home: Path, speed: float = 300.0, faults: str | None = None
) -> Iterator[str]:
    """``python -m paper_exchange`` in its own process over ``candles``; yields its URL.

    ``faults``: the text of a fault file (:mod:`paper_exchange.faults`) the exchange runs with.
    """
    home.mkdir(parents=True, exist_ok=True)
    fault_args: list[str] = []
    if faults is not None:
        fault_file = home / "faults.yaml"
        fault_file.write_text(faults, encoding="utf-8")
        fault_args = ["--faults", str(fault_file)]
    link = home / "candles"
    if not link.exists():
        link.symlink_to(candles, target_is_directory=True)
    port = free_port()
    log = open(home / "paper_exchange.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "paper_exchange",
            "--home",
            str(home),
            "--log-level",
            "WARNING",
            "--port",
            str(port),
            "--speed",
            str(speed),
            "--start",
            "2024-01-02",
            "--tick-ms",
            "50",
            *fault_args,
        ],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/fapi/v1/ping", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"paper exchange did not start: see {home / 'paper_exchange.log'}"
                    ) from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@dataclass
class CrashCounts:
    trials: int = 0
    kills: int = 0
    orders_placed: int = 0
    lost: int = 0
    duplicated: int = 0
    unprotected: int = 0
    positions_checked: int = 0
    late_fills: int = 0  # a resting entry filled between reconciliation and the check
    unreadable_replies: int = 0  # placements whose 2xx reply was unreadable (resolved by a query)
    corrections: int = 0  # final states the venue overruled (a fill after an acknowledged cancel)
    reconciled: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"trials={self.trials} kills={self.kills} orders placed={self.orders_placed} "
            f"lost={self.lost} duplicated={self.duplicated} unprotected positions={self.unprotected} "
            f"(positions checked={self.positions_checked}, filled after reconciliation={self.late_fills}; "
            f"faults met: unreadable 2xx replies={self.unreadable_replies}, corrections={self.corrections})"
        )


async def verify(url: str, db: Path, counts: CrashCounts, owners: dict[int, str]) -> None:
    """Restart, reconcile, and check the three invariants against the exchange."""
    exchange = await FuturesExchange.create(config(url), Secrets(), db, use_stream=False, symbols=[SYMBOL])
    try:
        result = await exchange.reconciler.run()
        counts.reconciled.update(result.counts())
        client, store = exchange.client, exchange.store
        resting = resting_entries(store)  # they may fill on the replay while we look
        open_orders = await client.get_open_orders(SYMBOL)
        algos = await client.get_open_algo_orders(SYMBOL)
        positions = await client.get_open_positions(SYMBOL)
        if resting and any(not protected(p, algos) for p in positions):
            # A resting entry filled after reconciliation: protecting it is the running monitor's
            # job (stream or poll, then the bracket sweep), so do one round of it and look again.
            counts.late_fills += 1
            await exchange.monitor.poll_active()
            await exchange.monitor.run_pending()
            await exchange.monitor.sweep()
            open_orders = await client.get_open_orders(SYMBOL)
            algos = await client.get_open_algo_orders(SYMBOL)
            positions = await client.get_open_positions(SYMBOL)
        trades = await client.get_user_trades(SYMBOL, limit=1000)  # the newest 1000
        for order_id in {t.orderId for t in trades} - owners.keys():
            owners[order_id] = (await client.get_order(SYMBOL, order_id=order_id)).clientOrderId
        on_exchange: dict[str, set[str]] = {}
        for o in open_orders:
            on_exchange.setdefault(o.clientOrderId, set()).add(f"o{o.orderId}")
        for a in algos:
            on_exchange.setdefault(a.clientAlgoId, set()).add(f"a{a.algoId}")
        for t in trades:
            on_exchange.setdefault(owners[t.orderId], set()).add(f"o{t.orderId}")
        for cid, ids in on_exchange.items():
            if not is_ours(cid):
                continue
            if store.get_order(cid) is None:
                counts.lost += 1
                counts.problems.append(f"lost: {cid} {ids}")
            kinds = Counter(i[0] for i in ids)  # an algo id ("a") and its triggered order ("o") is one
            if max(kinds.values()) > 1:
                counts.duplicated += 1
                counts.problems.append(f"duplicated on the exchange: {cid} {ids}")
        all_orders = store.all_orders()
        counts.orders_placed = len([o for o in all_orders if o.exchange_order_id or o.algo_id])
        entries = Counter(o.intent_id for o in all_orders if o.kind is OrderKind.ENTRY)
        for intent_id, n in entries.items():
            if n > 1:
                counts.duplicated += 1
                counts.problems.append(f"intent {intent_id} has {n} entries")
        for position in positions:
            counts.positions_checked += 1
            stops = stops_of(position, algos)
            if not stops:
                counts.unprotected += 1
                rows = [(o.client_order_id, o.state.value, o.executed_qty) for o in open_intent_orders(store)]
                counts.problems.append(
                    f"unprotected: {position.positionAmt} {SYMBOL}; algos {algos}; open orders "
                    f"{open_orders}; resting entries after reconciliation {resting}; SQLite {rows}"
                )
            elif len(stops) > 1:
                counts.duplicated += 1
                counts.problems.append(f"{len(stops)} stops on one position")
    finally:
        await exchange.stop()


def stops_of(position: Position, algos: list[AlgoOrder]) -> list[AlgoOrder]:
    """The closePosition STOP_MARKET orders that protect ``position``."""
    closing = "SELL" if position.positionAmt > 0 else "BUY"
    return [a for a in algos if a.orderType == "STOP_MARKET" and a.closePosition and a.side == closing]


def protected(position: Position, algos: list[AlgoOrder]) -> bool:
    return bool(stops_of(position, algos))


def resting_entries(store: OrderStore) -> list[str]:
    """Client ids of the open intents' entries still working on the exchange."""
    return [
        o.client_order_id for o in open_intent_orders(store) if o.kind is OrderKind.ENTRY and not o.is_final
    ]


def open_intent_orders(store: OrderStore) -> list[Order]:
    """Every order of the open intents."""
    return [o for intent in store.open_intents() for o in store.orders_of_intent(intent.intent_id)]


def run_trials(
    trials: int, candles: Path, workdir: Path, seed: int = 1, speed: float = 300.0, faults: bool = True
) -> CrashCounts:
    """``trials`` x (start the worker, SIGKILL it at a random moment, restart + reconcile + verify)."""
    rng = random.Random(seed)
    counts = CrashCounts()
    db = workdir / "xylen.db"
    owners: dict[int, str] = {}
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    fault_text = CRASH_FAULTS if faults else None
    with paper_exchange_process(candles, workdir / "paper", speed, fault_text) as url:
        for trial in range(trials):
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "coordinator.tests.manager_crash_worker",
                    url,
                    str(db),
                    str(seed * 1000 + trial),
                ],
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                assert proc.stdout is not None
                line = proc.stdout.readline().strip()
                if line != "ready":
                    raise RuntimeError(
                        f"worker did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}"
                    )
                time.sleep(rng.uniform(0.2, 2.0))
                if proc.poll() is not None:
                    raise RuntimeError(f"worker died: {proc.stderr.read() if proc.stderr else ''}")
                proc.send_signal(signal.SIGKILL)
                counts.kills += 1
            finally:
                proc.wait(timeout=10)
                if proc.stdout is not None:
                    proc.stdout.close()
                if proc.stderr is not None:
                    proc.stderr.close()
            asyncio.run(verify(url, db, counts, owners))
            counts.trials += 1
    count_faults_met(db, counts)
    return counts


def count_faults_met(db: Path, counts: CrashCounts) -> None:
    """How often the orders met the two faults, from their ``order_events`` rows."""
    store = OrderStore.open(db)
    try:
        conn = store.connection
        counts.corrections = conn.execute(
            "SELECT count(*) FROM order_events WHERE kind = 'CORRECTION' AND applied = 1"
        ).fetchone()[0]
        counts.unreadable_replies = conn.execute(
            "SELECT count(*) FROM order_events"
            " WHERE kind = 'UNKNOWN_OUTCOME' AND event LIKE '%unreadable body%'"
        ).fetchone()[0]
    finally:
        store.close()


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    url, db, seed = argv
    asyncio.run(trade_forever(url, db, int(seed)))


if __name__ == "__main__":
    main(sys.argv[1:])
