"""The real clients against the transport: python-binance's AsyncClient and ccxt's binanceusdm.

Both are pointed at a real server on 127.0.0.1, the way Binance documents base URLs.  The service behind it
is ``FakeService``, a fake at the seam (``test_transport_support``): these tests prove that what
the clients send (their parameter order, form bodies, signatures, headers) is accepted and that
they parse the replies; the end-to-end tests repeat them against the real engine.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from paper_exchange.tests.test_transport_support import KEY, SECRET, FakeService, running_app

binance = pytest.importorskip("binance")
ccxt_async = pytest.importorskip("ccxt.async_support")


def test_python_binance_async_client() -> None:
    from binance import AsyncClient

    service = FakeService()

    async def scenario() -> None:
        async with running_app(service) as (url, _app):

            class LocalClient(AsyncClient):  # type: ignore[misc]  # class attributes, so create()'s ping/time hit us too
                API_URL = f"{url}/api"
                FUTURES_URL = f"{url}/fapi"

            client = await LocalClient.create(KEY, SECRET)
            try:
                assert abs(client.timestamp_offset) < 5000  # create() called /api/v3/ping and /time
                assert "serverTime" in await client.futures_time()
                order = await client.futures_create_order(
                    symbol="BTCUSDT",
                    side="BUY",
                    type="LIMIT",
                    quantity="0.010",
                    price="20000",
                    timeInForce="GTC",
                )
                assert order["status"] == "NEW" and order["clientOrderId"].startswith("x-Cb7ytekJ")
                cancelled = await client.futures_cancel_order(symbol="BTCUSDT", orderId=order["orderId"])
                assert cancelled["status"] == "CANCELED"
                balances = await client.futures_account_balance()
                assert balances[0]["asset"] == "USDT"
                key = await client.futures_stream_get_listen_key()
                await client.futures_stream_keepalive(key)
            finally:
                await client.close_connection()

    asyncio.run(scenario())
    names = [name for name, _, _ in service.calls]
    assert names[:2] == ["ping", "time"]
    assert {"new_order", "cancel_order", "balance"} <= set(names)
    # python-binance sends its params sorted and always with recvWindow=10000.
    new_order = next(params for name, _, params in service.calls if name == "new_order")
    assert new_order["recvWindow"] == "10000"


def _ccxt(url: str) -> Any:
    exchange = ccxt_async.binanceusdm(
        {"apiKey": KEY, "secret": SECRET, "options": {"fetchCurrencies": False}, "timeout": 10_000}
    )
    for name, version in [
        ("fapiPublic", "v1"),
        ("fapiPublicV2", "v2"),
        ("fapiPublicV3", "v3"),
        ("fapiPrivate", "v1"),
        ("fapiPrivateV2", "v2"),
        ("fapiPrivateV3", "v3"),
    ]:
        exchange.urls["api"][name] = f"{url}/fapi/{version}"
    exchange.exceptions["exact"].update(exchange.exceptions["linear"]["exact"])
    return exchange


def test_ccxt_binanceusdm() -> None:
    service = FakeService()

    async def scenario() -> None:
        async with running_app(service) as (url, _app):
            exchange = _ccxt(url)
            try:
                server_time = await exchange.fetch_time()
                assert abs(server_time - time.time() * 1000) < 5000
                ticker = await exchange.fetch_ticker("BTC/USDT:USDT")  # load_markets -> exchangeInfo
                assert ticker["last"] == 30000.0
                balance = await exchange.fetch_balance()  # signed GET
                assert balance["USDT"]["total"] == 10000.0
                order = await exchange.create_order(
                    "BTC/USDT:USDT", "limit", "buy", 0.01, 20000
                )  # signed POST body
                assert order["status"] == "open"
                cancelled = await exchange.cancel_order(order["id"], "BTC/USDT:USDT")  # signed DELETE query
                assert cancelled["status"] == "canceled"
                with pytest.raises(ccxt_async.OrderNotFound):
                    await exchange.cancel_order("999999", "BTC/USDT:USDT")
            finally:
                await exchange.close()

    asyncio.run(scenario())
    names = [name for name, _, _ in service.calls]
    assert {"exchange_info", "ticker_24hr", "account_v3", "new_order", "cancel_order"} <= set(names)
