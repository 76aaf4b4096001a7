"""Benchmark of one heartbeat beat: "snapshot in hand" to "order sent", the exchange round trip excluded.

Run: ``python bench/bench_beat.py [--servers 3,10] [--beats 200] [--candles 100]``.

The real :class:`~coordinator.heartbeat.Heartbeat` runs ``--beats`` beats (after 10 warm-up beats) with:
N real ``python -m model_server`` processes (started by :mod:`bench_fanout`, the same LightGBM model),
the real ensemble, risk manager, journal, metrics and order layer (``FuturesExchange`` and its
``OrderManager`` writing intents, orders and events to SQLite) on a temporary database, and the
instant clock (5 minutes a beat).  Only the exchange is replaced, by an in-process stand-in that
answers at once (balances, positions, mark price, and an entry acknowledged as ``EXPIRED`` so the
intent is cancelled and the next beat may trade again); the time spent inside it, and in handing
over the prepared snapshot (real feature rows of the shipped candles), is measured and subtracted.

Printed per N: beat p50 / p99 / max in milliseconds and how many beats sent an order.  Goal (issue):
p99 < 50 ms with 10 servers.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_fanout import TOKEN, build_model, start_servers  # noqa: E402

from coordinator.clock import InstantClock  # noqa: E402
from coordinator.ensemble import Ensemble  # noqa: E402
from coordinator.exchange import BinanceFuturesClient  # noqa: E402
from coordinator.exchange.facade import FuturesExchange  # noqa: E402
from coordinator.exchange.filters import SymbolRules  # noqa: E402
from coordinator.exchange.schemas import Balance, Order, Position, SymbolInfo  # noqa: E402
from coordinator.heartbeat import Heartbeat  # noqa: E402
from coordinator.metrics import Metrics  # noqa: E402
from coordinator.model_client import ModelClients  # noqa: E402
from coordinator.orders.store import OrderStore  # noqa: E402
from coordinator.risk import RiskManager  # noqa: E402
from coordinator.risk.state import RiskStore  # noqa: E402
from coordinator.snapshot import MarketData, MarketSnapshot  # noqa: E402
from coordinator.storage.db import init_db  # noqa: E402
from coordinator.storage.journal import Journal  # noqa: E402
from xylen.config import XylenConfig, parse_config  # noqa: E402
from xylen.paths import SHARED_BTC_5M, shared_data_dir  # noqa: E402

WARMUP_BEATS = 10
SYMBOL = "BTCUSDT"
STEP_MS = 300_000
START_MS = 1_706_745_600_000


class Stopwatch:
    """Accumulates the seconds spent in the excluded parts (the stand-in exchange, the snapshot)."""

    def __init__(self) -> None:
        self.excluded_s = 0.0

    def add(self, since: float) -> None:
        self.excluded_s += time.perf_counter() - since


class StandInClient:
    """The exchange calls a beat makes, answered at once (the round trip is what is excluded)."""

    def __init__(self, watch: Stopwatch, price: Decimal) -> None:
        self.watch = watch
        self.price = price
        self.orders = 0
        self.rules = SymbolRules.from_symbol_info(
            SymbolInfo.model_validate(
                {
                    "symbol": SYMBOL,
                    "status": "TRADING",
                    "pricePrecision": 2,
                    "quantityPrecision": 3,
                    "filters": [
                        {
                            "filterType": "PRICE_FILTER",
                            "tickSize": "0.10",
                            "minPrice": "0.1",
                            "maxPrice": "1e7",
                        },
                        {"filterType": "LOT_SIZE", "stepSize": "0.001", "minQty": "0.001", "maxQty": "1000"},
                        {"filterType": "MIN_NOTIONAL", "notional": "5"},
                    ],
                }
            )
        )

    def symbol_rules(self, symbol: str) -> SymbolRules:
        return self.rules

    async def raw_request(self, endpoint: object, params: dict[str, Any]) -> dict[str, Any]:
        t0 = time.perf_counter()
        reply = {"symbol": SYMBOL, "markPrice": str(self.price)}
        self.watch.add(t0)
        return reply

    async def get_account_balance(self) -> list[Balance]:
        t0 = time.perf_counter()
        reply = [Balance(asset="USDT", balance=Decimal(10_000), availableBalance=Decimal(10_000))]
        self.watch.add(t0)
        return reply

    async def get_open_positions(self, symbol: str | None = None) -> list[Position]:
        return []

    async def new_order(
        self, symbol: str, side: str, order_type: str, quantity: Decimal, price: Decimal | None, **kw: Any
    ) -> Order:
        t0 = time.perf_counter()
        self.orders += 1
        reply = Order(
            orderId=self.orders, symbol=symbol, status="EXPIRED", clientOrderId=str(kw["client_order_id"]),
            side=side, type=order_type, origQty=quantity,
        )  # fmt: skip
        self.watch.add(t0)
        return reply


class PreparedMarket:
    """Hands over prepared snapshots (real feature rows), one new closed candle a beat."""

    def __init__(self, watch: Stopwatch, rows: list[dict[str, float]], candles: list[list[float]]) -> None:
        self.watch = watch
        self.rows = rows
        self.candles = candles
        self.count = 0
        self.tails: dict[str, Any] = {}
        self.step_ms = STEP_MS

    async def snapshot_all(self, now_ms: int) -> dict[str, MarketSnapshot]:
        t0 = time.perf_counter()
        features = self.rows[self.count % len(self.rows)]
        self.count += 1
        close = float(self.candles[-1][4]) if self.candles else 43_000.0
        close_time = now_ms // STEP_MS * STEP_MS - 1
        snap = MarketSnapshot(
            symbol=SYMBOL, interval="5m", taken_ms=now_ms, server_ms=now_ms,
            open_time_ms=close_time + 1 - STEP_MS, close_time_ms=close_time, close=close,
            mark_price=Decimal(str(close)), last_price=Decimal(str(close)), funding_rate=0.0,
            next_funding_ms=None, features=features, candles=[tuple(c) for c in self.candles],  # type: ignore[misc]
            candle_count=1000, new_candles=1,
        )  # fmt: skip
        self.watch.add(t0)
        return {SYMBOL: snap}


def bench_config(urls: list[str]) -> XylenConfig:
    return parse_config(
        {
            "market": {"symbols": [SYMBOL]},
            "heartbeat": {"interval_seconds": 300.0, "deadline_seconds": 5.0, "clock": "instant"},
            "model_servers": [{"id": f"s{i}", "url": u, "timeout_ms": 5000} for i, u in enumerate(urls)],
            "ensemble": {"quorum": 1, "min_edge": 0.0, "max_disagreement": 0.5},
            "risk": {"sizing": "fixed_fraction", "fixed_fraction": 0.001, "cooldown_after_loss_seconds": 0.0},
            "trading": {
                "enabled": True,
                "horizon_minutes": 100_000,  # nothing matures during the run: outcomes are not timed
                "entry": "market",
                "taker_fee_bps": 0.0,
                "maker_fee_bps": 0.0,
                "slippage_bps": 0.0,
            },
        }
    )


async def run_beats(
    urls: list[str], rows: list[dict[str, float]], candles: list[list[float]], beats: int, root: Path
) -> dict[str, float]:
    """Build a heartbeat on the stand-ins and real parts, run the beats, return the figures."""
    config = bench_config(urls)
    db = root / f"bench-{len(urls)}.db"
    conn = init_db(db)
    watch = Stopwatch()
    price = Decimal(str(candles[-1][4])) if candles else Decimal(43_000)
    client = StandInClient(watch, price)
    store = OrderStore.open(db)
    exchange = FuturesExchange(
        config.exchange, cast(BinanceFuturesClient, client), store, use_stream=False, symbols=[SYMBOL]
    )
    ensemble = Ensemble.from_config(config)
    totals: list[float] = []
    orders = 0
    async with ModelClients(config.model_servers, TOKEN) as models:
        hb = Heartbeat(
            config, InstantClock(START_MS), cast(MarketData, PreparedMarket(watch, rows, candles)), exchange,
            models, ensemble, RiskManager.from_config(config, RiskStore(conn)),
            Journal(conn, ensemble.params), Metrics(),
        )  # fmt: skip
        clock = cast(InstantClock, hb.clock)
        for i in range(beats + WARMUP_BEATS):
            watch.excluded_s = 0.0
            report = await hb.beat()
            clock.advance(STEP_MS)
            if i < WARMUP_BEATS:
                continue
            totals.append((report.duration_s - watch.excluded_s) * 1000)
            orders += any(r.placement is not None for r in report.symbols.values())
    store.close()
    conn.close()
    return {
        "p50": statistics.median(totals),
        "p99": float(np.percentile(totals, 99)),
        "max": max(totals),
        "orders": orders,
        "beats": len(totals),
    }


def main() -> None:
    """Parse arguments, build the model, run each server count, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", default=None, help="shared data folder (default $XYLEN_SHARED_DATA)")
    parser.add_argument("--servers", default="3,10", help="server counts to measure (default 3,10)")
    parser.add_argument("--beats", type=int, default=200, help="beats per server count (default 200)")
    parser.add_argument("--candles", type=int, default=100, help="candles in each request (default 100)")
    args = parser.parse_args()
    candle_file = shared_data_dir(args.data) / SHARED_BTC_5M
    if not candle_file.is_file():
        raise SystemExit(f"{candle_file} not found (set --data or XYLEN_SHARED_DATA)")
    root = Path(tempfile.mkdtemp(prefix="xylen-bench-beat-"))
    model_dir = root / "model" / "v1"
    rows, candles = build_model(candle_file, model_dir, args.candles)
    print(f"{args.beats} beats each (after {WARMUP_BEATS} warm-up); exchange stand-in time subtracted")
    try:
        for n in (int(x) for x in args.servers.split(",")):
            servers = start_servers(root, model_dir, n)
            try:
                figures = asyncio.run(run_beats([s.url for s in servers], rows, candles, args.beats, root))
            finally:
                for s in servers:
                    s.stop()
            print(
                f"  {n:>2} servers: beat p50 {figures['p50']:6.2f} ms  p99 {figures['p99']:6.2f} ms  "
                f"max {figures['max']:6.2f} ms  beats that sent an order {figures['orders']:.0f}/"
                f"{figures['beats']:.0f}"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
