"""Benchmark of the paper exchange: signed orders per second through real HTTP on 127.0.0.1.

Run: ``python bench/bench_paper_exchange.py [--orders N] [--runs K] [--concurrency C] [--market]``.

The real service (``paper_exchange.service``) replays the shared BTCUSDT 5m candles (``--data`` or
``$XYLEN_SHARED_DATA``, default ``../shared/data``) with its SQLite store in a temporary folder;
the app runs in this process on 127.0.0.1 with its replay clock ticking, and one keep-alive
aiohttp session in the same process (so the client's CPU is counted against the server's) signs
and POSTs orders.  Without the real service the benchmark does not run (there is no fake here).

Orders: LIMIT BUYs 4% under the mark price (they rest), with ``DELETE allOpenOrders`` after every
``--batch`` orders to stay under MAX_NUM_ORDERS (the cancels count in the elapsed time); or, with
``--market``, MARKET orders alternating BUY/SELL.  The rate limits are lifted for the benchmark
(it measures the pipeline, not the limiter: 300 orders per 10 s would stop it at once).

Printed: orders per second (median of K runs) and p50/p99 latency of one order over all runs.
Goal: >= 1,500 signed orders per second.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import statistics
import sys
import tempfile
import time
from decimal import ROUND_DOWN, ROUND_UP, Decimal
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from paper_exchange.app import create_app  # noqa: E402
from paper_exchange.faults import Faults  # noqa: E402
from paper_exchange.settings import TransportSettings  # noqa: E402
from xylen.paths import SHARED_BTC_5M, shared_data_dir  # noqa: E402
from xylen.timeutil import wall_ms  # noqa: E402

KEY = "bench-key"
SECRET = "bench-secret"
GOAL = 1500.0
HEADERS = {"X-MBX-APIKEY": KEY, "Content-Type": "application/x-www-form-urlencoded"}


def build_service(data_dir: Path, db_dir: Path, speed: float) -> Any:
    """The real service on the shared BTCUSDT 5m candles, or exit with the reason it cannot run."""
    try:
        from paper_exchange.feed import ReplayFeed
        from paper_exchange.service import PaperExchangeService, ServiceConfig
    except ImportError as exc:
        print(f"bench_paper_exchange: cannot run: the real service is not importable ({exc})")
        raise SystemExit(1) from exc
    from xylen.data.importers import read_freqtrade_feather

    path = data_dir / SHARED_BTC_5M
    if not path.is_file():
        print(f"bench_paper_exchange: cannot run: {path} not found (set --data or XYLEN_SHARED_DATA)")
        raise SystemExit(1)
    feed = ReplayFeed({"BTCUSDT": read_freqtrade_feather(path)}, "5m")
    config = ServiceConfig(db_path=db_dir / "bench.db", symbols=("BTCUSDT",), speed=speed)
    return PaperExchangeService(config, feed=feed)


class Signer:
    """Client-side signing with a precompiled HMAC."""

    def __init__(self, secret: str) -> None:
        self._mac = hmac.new(secret.encode(), digestmod=hashlib.sha256)

    def body(self, query: str) -> str:
        mac = self._mac.copy()
        mac.update(query.encode())
        return f"{query}&signature={mac.hexdigest()}"


async def _json(session: aiohttp.ClientSession, method: str, url: str, data: str | None = None) -> Any:
    async with session.request(method, url, data=data, headers=HEADERS) as resp:
        body = await resp.json()
        if resp.status != 200:
            raise RuntimeError(f"{method} {url}: {resp.status} {body}")
        return body


async def one_run(
    session: aiohttp.ClientSession,
    url: str,
    signer: Signer,
    n: int,
    batch: int,
    market: bool,
    concurrency: int,
) -> tuple[float, list[float]]:
    """``(orders per second, latencies in s)`` of one run of ``n`` orders."""
    ticker = await _json(session, "GET", f"{url}/fapi/v1/premiumIndex?symbol=BTCUSDT")
    mark = Decimal(ticker["markPrice"])
    price = (mark * Decimal("0.96")).quantize(Decimal("0.1"), rounding=ROUND_DOWN)
    qty = (Decimal(110) / price).quantize(Decimal("0.001"), rounding=ROUND_UP)
    latencies: list[float] = []
    counter = 0

    async def place(i: int) -> None:
        if market:
            side = "BUY" if i % 2 == 0 else "SELL"
            query = f"symbol=BTCUSDT&side={side}&type=MARKET&quantity=0.002&timestamp={wall_ms()}"
        else:
            query = (
                f"symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity={qty}&price={price}"
                f"&timestamp={wall_ms()}"
            )
        started = time.perf_counter()
        async with session.post(f"{url}/fapi/v1/order", data=signer.body(query), headers=HEADERS) as resp:
            await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"order {i}: {resp.status} {await resp.text()}")
        latencies.append(time.perf_counter() - started)

    async def worker(indices: list[int]) -> None:
        for i in indices:
            await place(i)

    started = time.perf_counter()
    while counter < n:
        size = min(batch, n - counter)
        chunk = list(range(counter, counter + size))
        await asyncio.gather(*(worker(chunk[w::concurrency]) for w in range(concurrency)))
        counter += size
        if not market:
            query = f"symbol=BTCUSDT&timestamp={wall_ms()}"
            await _json(session, "DELETE", f"{url}/fapi/v1/allOpenOrders", signer.body(query))
    elapsed = time.perf_counter() - started
    return n / elapsed, latencies


async def main_async(args: argparse.Namespace) -> int:
    data_dir = shared_data_dir(args.data)
    with tempfile.TemporaryDirectory(prefix="bench-paper-exchange-") as tmp:
        service = build_service(data_dir, Path(tmp), args.speed)
        settings = TransportSettings(
            api_keys={KEY: SECRET},
            port=0,
            weight_limit_1m=10**9,
            orders_limit_10s=10**9,
            orders_limit_1m=10**9,
        )
        app = create_app(service, settings, faults=Faults())
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        url = f"http://{host}:{port}"
        connector = aiohttp.TCPConnector(limit=args.concurrency)
        timeout = aiohttp.ClientTimeout(total=30)
        signer = Signer(SECRET)
        rates: list[float] = []
        latencies: list[float] = []
        try:
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
                await one_run(
                    session, url, signer, min(200, args.orders), args.batch, args.market, args.concurrency
                )
                for run in range(args.runs):
                    rate, lat = await one_run(
                        session, url, signer, args.orders, args.batch, args.market, args.concurrency
                    )
                    rates.append(rate)
                    latencies.extend(lat)
                    print(f"run {run + 1}: {rate:,.0f} orders/s", flush=True)
        finally:
            await runner.cleanup()
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    median = statistics.median(rates)
    kind = "MARKET alternating" if args.market else f"resting LIMIT, cancel-all every {args.batch}"
    print(
        f"paper exchange: {median:,.0f} signed orders/s (median of {args.runs} runs of {args.orders:,}; "
        f"{kind}; {args.concurrency} in flight), latency p50 {p50:.2f} ms, p99 {p99:.2f} ms"
    )
    print(f"goal >= {GOAL:,.0f} orders/s: {'met' if median >= GOAL else 'NOT met'}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--orders", type=int, default=3000, help="orders per run (default 3000)")
    parser.add_argument("--runs", type=int, default=3, help="runs (default 3)")
    parser.add_argument(
        "--batch", type=int, default=190, help="LIMIT orders between cancel-alls (default 190)"
    )
    parser.add_argument("--concurrency", type=int, default=1, help="requests in flight (default 1)")
    parser.add_argument("--market", action="store_true", help="MARKET orders alternating BUY/SELL")
    parser.add_argument("--speed", type=float, default=60.0, help="replay speed (default 60)")
    parser.add_argument(
        "--data", default=None, help="shared data folder (default $XYLEN_SHARED_DATA or ../shared/data)"
    )
    args = parser.parse_args()
    if args.orders <= 0 or args.runs <= 0 or args.batch <= 0 or args.concurrency <= 0:
        parser.error("--orders, --runs, --batch and --concurrency must be positive")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
