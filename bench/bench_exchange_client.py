"""Benchmark of the exchange client's own overhead per order (time in Xylen's code, not the network).

Run: ``python bench/bench_exchange_client.py [--orders N] [--data DIR]``.

The real paper exchange (``paper_exchange.service`` replaying the shared BTCUSDT 5m candles, its
SQLite store in a temporary folder) is served in this process on 127.0.0.1 with its rate limits
lifted.  ``BinanceFuturesClient.new_order`` places resting LIMIT orders (cancelled in batches,
untimed) through a session carrying an aiohttp ``TraceConfig``: for every order the time between
``on_request_start`` and ``on_request_end`` (the HTTP exchange, the in-process server's work
included) is subtracted from the call's total.  What remains is the client's overhead: filters,
encoding, signing, the rate limiter, retry wrapper, error translation, JSON and schema parsing.

For comparison the same orders are sent by a bare aiohttp loop (pre-built params, HMAC, POST,
``orjson.loads``).  Printed: medians per order.  Goal: client overhead under 1 ms.
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
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from pydantic import SecretStr

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from coordinator.exchange import BinanceFuturesClient, RateLimiter  # noqa: E402
from coordinator.exchange.constants import Endpoint  # noqa: E402
from paper_exchange.app import create_app  # noqa: E402
from paper_exchange.faults import Faults  # noqa: E402
from paper_exchange.service import PaperExchangeService, ServiceConfig  # noqa: E402
from paper_exchange.settings import TransportSettings  # noqa: E402
from xylen.config.schema import ExchangeConfig  # noqa: E402
from xylen.config.secrets import Secrets  # noqa: E402
from xylen.data import CandleStore  # noqa: E402
from xylen.data.importers import import_file  # noqa: E402
from xylen.paths import SHARED_BTC_5M, shared_data_dir  # noqa: E402
from xylen.timeutil import wall_ms  # noqa: E402

KEY, SECRET = "bench-key", "bench-secret"
SYMBOL = "BTCUSDT"
START_MS = 1_704_153_600_000
BATCH = 150
TICKER = Endpoint("GET", "/fapi/v1/ticker/price", 1, 2)
CANCEL_ALL = Endpoint("DELETE", "/fapi/v1/allOpenOrders", signed=True)
BIG = 1_000_000_000


class HttpTimer:
    """Collects the duration of each HTTP exchange through aiohttp's tracing hooks."""

    def __init__(self) -> None:
        self.spent = 0.0
        self.config = aiohttp.TraceConfig()
        self.config.on_request_start.append(self._start)
        self.config.on_request_end.append(self._end)
        self._started = 0.0

    async def _start(self, session: aiohttp.ClientSession, ctx: SimpleNamespace, params: Any) -> None:
        self._started = time.perf_counter()

    async def _end(self, session: aiohttp.ClientSession, ctx: SimpleNamespace, params: Any) -> None:
        self.spent += time.perf_counter() - self._started


async def bench_client(url: str, orders: int) -> tuple[list[float], list[float]]:
    """Per-order (total, overhead) seconds of ``BinanceFuturesClient.new_order``."""
    timer = HttpTimer()
    session = aiohttp.ClientSession(trace_configs=[timer.config])
    config = ExchangeConfig(paper_url=url)
    secrets = Secrets(paper_api_key=SecretStr(KEY), paper_api_secret=SecretStr(SECRET))
    limiter = RateLimiter(BIG, BIG, BIG)  # still consulted on every request, never waits
    client = await BinanceFuturesClient.create(config, secrets, session=session, limiter=limiter)
    totals: list[float] = []
    overheads: list[float] = []
    try:
        price = Decimal((await client.raw_request(TICKER, {"symbol": SYMBOL}))["price"]) * Decimal("0.96")
        for n in range(orders):
            if n and n % BATCH == 0:
                await client.raw_request(CANCEL_ALL, {"symbol": SYMBOL})
            timer.spent = 0.0
            started = time.perf_counter()
            await client.new_order(
                SYMBOL, "BUY", "LIMIT", Decimal("0.0101"), price, client_order_id=f"bench-{n}"
            )
            total = time.perf_counter() - started
            totals.append(total)
            overheads.append(total - timer.spent)
        await client.raw_request(CANCEL_ALL, {"symbol": SYMBOL})
    finally:
        await client.close()
        await session.close()
    return totals, overheads


async def bench_raw(url: str, orders: int, price: str) -> list[float]:
    """Per-order seconds of a bare aiohttp loop sending the same orders."""
    secret = SECRET.encode()
    headers = {"X-MBX-APIKEY": KEY, "Content-Type": "application/x-www-form-urlencoded"}
    times: list[float] = []
    async with aiohttp.ClientSession() as session:
        server_ms = orjson.loads(await (await session.get(f"{url}/fapi/v1/time")).read())["serverTime"]
        offset = server_ms - wall_ms()
        for n in range(orders):
            if n and n % BATCH == 0:
                await _raw_cancel_all(session, url, secret, headers, offset)
            started = time.perf_counter()
            query = (
                f"symbol={SYMBOL}&side=BUY&type=LIMIT&quantity=0.010&price={price}&timeInForce=GTC"
                f"&newClientOrderId=raw-{n}&newOrderRespType=RESULT&recvWindow=5000"
                f"&timestamp={wall_ms() + offset}"
            )
            body = f"{query}&signature={hmac.new(secret, query.encode(), hashlib.sha256).hexdigest()}"
            async with session.post(f"{url}/fapi/v1/order", data=body.encode(), headers=headers) as response:
                reply = orjson.loads(await response.read())
            times.append(time.perf_counter() - started)
            if response.status != 200:
                raise RuntimeError(f"raw order failed: {reply}")
        await _raw_cancel_all(session, url, secret, headers, offset)
    return times


async def _raw_cancel_all(
    session: aiohttp.ClientSession, url: str, secret: bytes, headers: dict[str, str], offset: int
) -> None:
    query = f"symbol={SYMBOL}&timestamp={wall_ms() + offset}"
    body = f"{query}&signature={hmac.new(secret, query.encode(), hashlib.sha256).hexdigest()}"
    async with session.delete(
        f"{url}/fapi/v1/allOpenOrders", data=body.encode(), headers=headers
    ) as response:
        await response.read()


async def main(orders: int, data: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        import_file(data / SHARED_BTC_5M, CandleStore(home / "candles"))
        service = PaperExchangeService(ServiceConfig.from_home(home, start_ms=START_MS))
        settings = TransportSettings(
            api_keys={KEY: SECRET}, port=0, weight_limit_1m=BIG, orders_limit_10s=BIG, orders_limit_1m=BIG
        )
        runner = web.AppRunner(create_app(service, settings, faults=Faults()), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        url = f"http://{host}:{port}"
        try:
            await bench_client(url, min(200, orders))  # warm-up
            totals, overheads = await bench_client(url, orders)
            async with aiohttp.ClientSession() as session:
                ticker = orjson.loads(
                    await (await session.get(f"{url}/fapi/v1/ticker/price?symbol={SYMBOL}")).read()
                )
            price = str((Decimal(ticker["price"]) * Decimal("0.96")).quantize(Decimal("0.1")))
            raw = await bench_raw(url, orders, price)
        finally:
            await runner.cleanup()
    ms = 1000.0
    print(f"orders: {orders} resting LIMIT BUYs on the real paper exchange (127.0.0.1, in-process)")
    print(f"client new_order, total per order      median {statistics.median(totals) * ms:.3f} ms")
    print(f"bare aiohttp loop, total per order     median {statistics.median(raw) * ms:.3f} ms")
    difference = (statistics.median(totals) - statistics.median(raw)) * ms
    print(f"difference of the medians              {difference:.3f} ms")
    median = statistics.median(overheads) * ms
    p99 = sorted(overheads)[int(len(overheads) * 0.99) - 1] * ms
    print(f"client overhead per order (outside the HTTP exchange): median {median:.3f} ms, p99 {p99:.3f} ms")
    print(f"goal < 1 ms: {'met' if median < 1.0 else 'NOT met'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument(
        "--data", default=None, help="shared data folder (default $XYLEN_SHARED_DATA or ../shared/data)"
    )
    args = parser.parse_args()
    asyncio.run(main(args.orders, shared_data_dir(args.data)))
