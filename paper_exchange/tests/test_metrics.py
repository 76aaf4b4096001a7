"""``GET /metrics`` of the paper exchange: the REAL engine over real HTTP, python-binance as the client.

Orders placed, filled, canceled and expired, algo orders, requests by route and status (a 404 and
a refused signature among them), open orders and the replay clock, all read back from the
Prometheus text with prometheus_client's own parser.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from paper_exchange.metrics import ORDER_EVENTS
from paper_exchange.tests.e2e_support import SYMBOL, binance_client, candle_root, make_service, near, serve

binance = pytest.importorskip("binance")
from binance.exceptions import BinanceAPIException  # noqa: E402

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def candles(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    return candle_root(tmp_path_factory, shared_data)


async def _scrape(url: str) -> tuple[str, Samples]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s,
        s.get(url + "/metrics") as r,
    ):
        assert r.status == 200
        text = await r.text()
        ctype = r.headers["Content-Type"]
    samples = {
        (x.name, tuple(sorted(x.labels.items()))): x.value
        for family in text_string_to_metric_families(text)
        for x in family.samples
    }
    return ctype, samples


def _orders(got: Samples) -> dict[str, float]:
    return {labels[0][1]: v for (name, labels), v in got.items() if name == "xylen_paper_orders_total"}


def _requests(got: Samples, route: str, status: int) -> float:
    return got.get(("xylen_paper_http_requests_total", (("route", route), ("status", str(status)))), 0.0)


def test_metrics_count_orders_requests_and_read_the_engine(candles: Path, tmp_path: Path) -> None:
    service = make_service(candles, tmp_path)

    async def scenario() -> None:
        async with serve(service) as url:
            ctype, got = await _scrape(url)
            assert ctype.startswith("text/plain")
            assert _orders(got) == dict.fromkeys(ORDER_EVENTS, 0.0)  # every event present from 0
            assert got[("xylen_paper_replay_time_seconds", ())] == service.now_ms() / 1000
            assert got[("xylen_paper_open_orders", (("kind", "order"),))] == 0

            client = await binance_client(url)
            try:
                price = Decimal((await client.futures_symbol_ticker(symbol=SYMBOL))["price"])
                rest = await client.futures_create_order(
                    symbol=SYMBOL, side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.010",
                    price=near(price, "0.98"),
                )  # fmt: skip
                _, got = await _scrape(url)
                assert got[("xylen_paper_open_orders", (("kind", "order"),))] == 1
                await client.futures_cancel_order(symbol=SYMBOL, orderId=rest["orderId"])
                await client.futures_create_order(
                    symbol=SYMBOL, side="BUY", type="LIMIT", timeInForce="IOC", quantity="0.010",
                    price=near(price, "0.99"),
                )  # fmt: skip
                await client.futures_create_order(symbol=SYMBOL, side="BUY", type="MARKET", quantity="0.010")
                await client.futures_create_algo_order(
                    symbol=SYMBOL, side="SELL", type="STOP_MARKET", triggerPrice=near(price, "0.97"),
                    closePosition="true", clientAlgoId="sl-1",
                )  # fmt: skip
                with pytest.raises(BinanceAPIException):
                    await client.futures_cancel_order(symbol=SYMBOL, orderId=987654321)
            finally:
                await client.close_connection()
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s,
                s.get(url + "/fapi/v1/nothing-here") as r,
            ):
                assert r.status == 404

            for _ in range(100):  # the MARKET fill is delivered at the next commit of the replay clock
                _, got = await _scrape(url)
                if _orders(got)["filled"] >= 1:
                    break
                await asyncio.sleep(0.05)
            assert _orders(got) == {"placed": 3, "filled": 1, "canceled": 1, "expired": 1}
            assert got[("xylen_paper_algo_orders_total", (("status", "NEW"),))] == 1
            assert got[("xylen_paper_open_orders", (("kind", "order"),))] == 0
            assert got[("xylen_paper_open_orders", (("kind", "algo"),))] == 1
            assert _requests(got, "POST /fapi/v1/order", 200) == 3
            assert _requests(got, "DELETE /fapi/v1/order", 200) == 1
            assert _requests(got, "DELETE /fapi/v1/order", 400) == 1  # -2011 unknown order
            assert _requests(got, "unmatched", 404) == 1
            assert _requests(got, "GET /metrics", 200) >= 2  # a scrape counts once it has answered
            assert abs(got[("xylen_paper_replay_time_seconds", ())] - service.now_ms() / 1000) < 60

    asyncio.run(scenario())
