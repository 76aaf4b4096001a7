"""End to end: python-binance's AsyncClient against the REAL engine over real HTTP on 127.0.0.1.

Every endpoint Xylen uses, every order type (MARKET, LIMIT GTC/IOC/GTX, reduceOnly; STOP_MARKET
and TAKE_PROFIT_MARKET closePosition through the algo endpoint), and each error code arriving as
python-binance's own ``BinanceAPIException`` with Binance's ``code`` and HTTP ``status_code``.
Real BTCUSDT 5m candles (``e2e_support``); no fakes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from paper_exchange.tests.e2e_support import (
    START_MS,
    SYMBOL,
    binance_client,
    candle_root,
    make_service,
    near,
    serve,
    transport,
)
from paper_exchange.tests.test_transport_support import OTHER_KEY, SECRET

binance = pytest.importorskip("binance")
from binance.exceptions import BinanceAPIException  # noqa: E402


@pytest.fixture(scope="module")
def candles(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    return candle_root(tmp_path_factory, shared_data)


async def expect_error(call: Awaitable[Any], code: int | None, status: int) -> BinanceAPIException:
    with pytest.raises(BinanceAPIException) as err:
        await call
    assert (err.value.code, err.value.status_code) == (code, status), err.value.message
    return err.value


def test_market_data(candles: Path, tmp_path: Path) -> None:
    service = make_service(candles, tmp_path)

    async def scenario() -> None:
        async with serve(service) as url:
            client = await binance_client(url)
            try:
                assert await client.futures_ping() == {}
                assert abs((await client.futures_time())["serverTime"] - time.time() * 1000) < 5000
                info = await client.futures_exchange_info()
                (btc,) = info["symbols"]
                assert btc["symbol"] == SYMBOL and btc["status"] == "TRADING"
                filters = {f["filterType"]: f for f in btc["filters"]}
                assert filters["PRICE_FILTER"]["tickSize"] == "0.10"
                assert filters["LOT_SIZE"]["stepSize"] == "0.001"
                assert filters["MIN_NOTIONAL"]["notional"] == "100"
                assert {r["rateLimitType"] for r in info["rateLimits"]} == {"REQUEST_WEIGHT", "ORDERS"}

                klines = await client.futures_klines(symbol=SYMBOL, interval="5m", limit=3)
                assert len(klines) == 3
                assert [type(v) for v in klines[0]] == [
                    int,
                    str,
                    str,
                    str,
                    str,
                    str,
                    int,
                    str,
                    int,
                    str,
                    str,
                    str,
                ]
                assert klines[-1][0] == START_MS and klines[0][6] == klines[0][0] + 299_999
                hourly = await client.futures_klines(symbol=SYMBOL, interval="1h", limit=2)
                assert hourly[-1][0] == START_MS

                price = await client.futures_symbol_ticker(symbol=SYMBOL)
                assert price["symbol"] == SYMBOL and Decimal(price["price"]) > 0
                assert price["time"] == START_MS
                assert isinstance(await client.futures_symbol_ticker(), list)
                ticker = await client.futures_ticker(symbol=SYMBOL)
                assert ticker["lastPrice"] == price["price"]
                assert (
                    Decimal(ticker["lowPrice"])
                    <= Decimal(ticker["lastPrice"])
                    <= Decimal(ticker["highPrice"])
                )
                mark = await client.futures_mark_price(symbol=SYMBOL)
                assert Decimal(mark["markPrice"]) == Decimal(price["price"])
                assert mark["nextFundingTime"] > START_MS
                await expect_error(client.futures_klines(symbol="DOGEUSDT", interval="5m"), -1121, 400)
                await expect_error(client.futures_klines(symbol=SYMBOL, interval="7m"), -1120, 400)
            finally:
                await client.close_connection()

    asyncio.run(scenario())


def test_orders_positions_and_account(candles: Path, tmp_path: Path) -> None:
    service = make_service(candles, tmp_path)

    async def scenario() -> None:
        async with serve(service) as url:
            client = await binance_client(url)
            try:
                await run_trading(client)
            finally:
                await client.close_connection()

    asyncio.run(scenario())


async def run_trading(client: Any) -> None:
    # account settings
    assert await client.futures_get_position_mode() == {"dualSidePosition": False}
    assert await client.futures_change_position_mode(dualSidePosition="true") == {
        "code": 200,
        "msg": "success",
    }
    assert (await client.futures_get_position_mode())["dualSidePosition"] is True
    await client.futures_change_position_mode(dualSidePosition="false")
    lev = await client.futures_change_leverage(symbol=SYMBOL, leverage=10)
    assert lev["leverage"] == 10 and lev["symbol"] == SYMBOL and isinstance(lev["maxNotionalValue"], str)
    bracket = await client.futures_leverage_bracket(symbol=SYMBOL)
    assert bracket["symbol"] == SYMBOL and bracket["brackets"][0]["notionalFloor"] == 0
    assert any(
        b["initialLeverage"] >= 10 and b["notionalCap"] == int(lev["maxNotionalValue"])
        for b in bracket["brackets"]
    )
    assert isinstance(bracket["brackets"][0]["maintMarginRatio"], float)
    assert await client.futures_change_margin_type(symbol=SYMBOL, marginType="ISOLATED") == {
        "code": 200,
        "msg": "success",
    }
    await client.futures_change_margin_type(symbol=SYMBOL, marginType="CROSSED")

    price = Decimal((await client.futures_symbol_ticker(symbol=SYMBOL))["price"])

    # LIMIT GTC resting, then query / open orders / cancel
    rest = await client.futures_create_order(
        symbol=SYMBOL,
        side="BUY",
        type="LIMIT",
        timeInForce="GTC",
        quantity="0.010",
        price=near(price, "0.98"),
    )
    assert rest["status"] == "NEW" and rest["clientOrderId"].startswith("x-Cb7ytekJ")
    got = await client.futures_get_order(symbol=SYMBOL, origClientOrderId=rest["clientOrderId"])
    assert got["orderId"] == rest["orderId"] and got["status"] == "NEW" and "time" in got
    opened = await client.futures_get_open_orders(symbol=SYMBOL)
    assert [o["orderId"] for o in opened] == [rest["orderId"]]
    cancelled = await client.futures_cancel_order(symbol=SYMBOL, orderId=rest["orderId"])
    assert cancelled["status"] == "CANCELED"

    # GTX post-only resting (does not cross), then cancel-all
    maker = await client.futures_create_order(
        symbol=SYMBOL,
        side="SELL",
        type="LIMIT",
        timeInForce="GTX",
        quantity="0.010",
        price=near(price, "1.02"),
    )
    assert maker["status"] == "NEW" and maker["timeInForce"] == "GTX"
    done = await client.futures_cancel_all_open_orders(symbol=SYMBOL)
    assert done == {"code": 200, "msg": "The operation of cancel all open order is done."}
    assert await client.futures_get_open_orders(symbol=SYMBOL) == []
    gone = await client.futures_get_order(symbol=SYMBOL, orderId=maker["orderId"])
    assert gone["status"] == "CANCELED"

    # IOC that cannot fill expires
    ioc = await client.futures_create_order(
        symbol=SYMBOL,
        side="BUY",
        type="LIMIT",
        timeInForce="IOC",
        quantity="0.010",
        price=near(price, "0.99"),
        newOrderRespType="RESULT",
    )
    assert ioc["status"] == "EXPIRED" and ioc["executedQty"] == "0.000"

    # MARKET entry (ACK reply, then FILLED on query)
    entry = await client.futures_create_order(symbol=SYMBOL, side="BUY", type="MARKET", quantity="0.010")
    assert entry["status"] == "NEW" and entry["type"] == "MARKET"
    filled = await client.futures_get_order(symbol=SYMBOL, orderId=entry["orderId"])
    assert (
        filled["status"] == "FILLED" and filled["executedQty"] == "0.010" and Decimal(filled["avgPrice"]) > 0
    )

    # positions, balance, account
    (pos,) = await client.futures_position_information(symbol=SYMBOL)
    assert pos["positionAmt"] == "0.010" and pos["positionSide"] == "BOTH"
    assert Decimal(pos["entryPrice"]) == Decimal(filled["avgPrice"]) and isinstance(pos["adl"], int)
    balances = await client.futures_account_balance()
    (usdt,) = [b for b in balances if b["asset"] == "USDT"]
    assert Decimal(usdt["balance"]) < 10_000  # the taker fee was paid
    account = await client.futures_account()
    assert account["canTrade"] is True
    (acct_pos,) = [p for p in account["positions"] if p["symbol"] == SYMBOL]
    assert acct_pos["positionAmt"] == "0.010" and acct_pos["leverage"] == "10"

    # bracket through the algo endpoint: client's own method and its create_order routing
    stop = await client.futures_create_algo_order(
        symbol=SYMBOL,
        side="SELL",
        type="STOP_MARKET",
        triggerPrice=near(price, "0.97"),
        closePosition="true",
        clientAlgoId="sl-1",
    )
    assert (
        stop["algoStatus"] == "NEW" and stop["orderType"] == "STOP_MARKET" and stop["closePosition"] is True
    )
    take = await client.futures_create_order(
        symbol=SYMBOL,
        side="SELL",
        type="TAKE_PROFIT_MARKET",
        stopPrice=near(price, "1.03"),
        closePosition="true",
    )
    assert take["algoStatus"] == "NEW" and take["orderType"] == "TAKE_PROFIT_MARKET"
    assert take["clientAlgoId"].startswith("x-Cb7ytekJ")
    algos = await client.futures_get_open_algo_orders(symbol=SYMBOL)
    assert sorted(a["algoId"] for a in algos) == sorted([stop["algoId"], take["algoId"]])
    queried = await client.futures_get_algo_order(clientAlgoId="sl-1")
    assert queried["algoId"] == stop["algoId"] and "actualOrderId" in queried
    gone_algo = await client.futures_cancel_algo_order(algoId=take["algoId"])
    assert gone_algo == {
        "algoId": take["algoId"],
        "clientAlgoId": take["clientAlgoId"],
        "code": "200",
        "msg": "success",
    }
    assert [a["algoId"] for a in await client.futures_get_open_orders(symbol=SYMBOL, conditional=True)] == [
        stop["algoId"]
    ]

    # reduceOnly exit closes the position; user trades show both fills
    exit_ = await client.futures_create_order(
        symbol=SYMBOL,
        side="SELL",
        type="MARKET",
        quantity="0.010",
        reduceOnly="true",
        newOrderRespType="RESULT",
    )
    assert exit_["status"] == "FILLED" and exit_["reduceOnly"] is True
    assert all(
        Decimal(p["positionAmt"]) == 0 for p in await client.futures_position_information(symbol=SYMBOL)
    )
    trades = await client.futures_account_trades(symbol=SYMBOL)
    assert [t["orderId"] for t in trades] == [entry["orderId"], exit_["orderId"]]
    assert trades[0]["buyer"] is True and trades[1]["side"] == "SELL"
    assert all(isinstance(t[k], str) for t in trades for k in ("price", "qty", "commission", "realizedPnl"))
    await client.futures_cancel_algo_order(algoId=stop["algoId"])

    # listen key
    key = await client.futures_stream_get_listen_key()
    assert isinstance(key, str) and key
    assert await client.futures_stream_get_listen_key() == key  # a repeat POST returns the live key
    await client.futures_stream_keepalive(key)
    assert await client.futures_stream_close(key) == {}
    await expect_error(client.futures_stream_keepalive(key), -1125, 400)


def test_each_error_code_is_a_binance_api_exception(candles: Path, tmp_path: Path) -> None:
    service = make_service(candles, tmp_path)

    async def scenario() -> None:
        async with serve(service) as url:
            client = await binance_client(url)
            try:
                price = Decimal((await client.futures_symbol_ticker(symbol=SYMBOL))["price"])
                limit = {"symbol": SYMBOL, "side": "BUY", "type": "LIMIT", "timeInForce": "GTC"}
                below = near(price, "0.99")
                await expect_error(
                    client.futures_create_order(**limit, quantity="0.0105", price=below), -1111, 400
                )
                await expect_error(
                    client.futures_create_order(**limit, quantity="10", price=below), -2019, 400
                )
                await expect_error(
                    client.futures_create_algo_order(
                        symbol=SYMBOL,
                        side="SELL",
                        type="STOP_MARKET",
                        triggerPrice=near(price, "1.01"),
                        quantity="0.01",
                    ),
                    -2021,
                    400,
                )
                await expect_error(
                    client.futures_create_order(
                        symbol=SYMBOL, side="SELL", type="MARKET", quantity="0.010", reduceOnly="true"
                    ),
                    -2022,
                    400,
                )
                await expect_error(
                    client.futures_create_order(**limit, quantity="0.002", price=below), -4164, 400
                )
                await expect_error(
                    client.futures_create_order(
                        **{**limit, "timeInForce": "GTX"}, quantity="0.010", price=near(price, "1.01")
                    ),
                    -5022,
                    400,
                )
                # python-binance itself routes conditional types to algoOrder: send one to /order raw.
                await expect_error(
                    client._request_futures_api(
                        "post",
                        "order",
                        True,
                        data={
                            "symbol": SYMBOL,
                            "side": "SELL",
                            "type": "STOP_MARKET",
                            "stopPrice": near(price, "0.9"),
                            "quantity": "0.010",
                        },
                    ),
                    -4120,
                    400,
                )
                await expect_error(
                    client.futures_change_margin_type(symbol=SYMBOL, marginType="CROSSED"), -4046, 400
                )
                await expect_error(client.futures_cancel_order(symbol=SYMBOL, orderId=987654), -2011, 400)
                await expect_error(client.futures_get_order(symbol=SYMBOL, orderId=987654), -2013, 400)
                await expect_error(client.futures_cancel_algo_order(algoId=987654), -2011, 400)
                assert await client.futures_get_open_orders(symbol=SYMBOL) == []

                client.timestamp_offset = 5_000  # our clock 5 s ahead of the server's
                await expect_error(client.futures_account_balance(), -1021, 400)
            finally:
                await client.close_connection()
            wrong_secret = await binance_client(url, secret=SECRET + "x")
            try:
                await expect_error(wrong_secret.futures_account_balance(), -1022, 400)
            finally:
                await wrong_secret.close_connection()
            unknown_key = await binance_client(url, key="no-such-key")
            try:
                await expect_error(unknown_key.futures_account_balance(), -2015, 401)
                await expect_error(unknown_key.futures_stream_get_listen_key(), -2015, 401)
            finally:
                await unknown_key.close_connection()
            other = await binance_client(url, key=OTHER_KEY, secret="other-secret")
            try:
                assert isinstance(await other.futures_account_balance(), list)  # the other account works
            finally:
                await other.close_connection()

    asyncio.run(scenario())


def test_429_then_418(candles: Path, tmp_path: Path) -> None:
    service = make_service(candles, tmp_path)
    frozen = time.time()  # one rate-limit window for the whole test (only public endpoints below)

    async def scenario() -> None:
        async with serve(
            service, transport(weight_limit_1m=6, ban_after_429s=2), clock=lambda: frozen
        ) as url:
            client = await binance_client(url)  # ping + time: weight 2
            try:
                statuses: list[int] = []
                for _ in range(20):
                    try:
                        await client.futures_klines(symbol=SYMBOL, interval="5m", limit=5)
                    except BinanceAPIException as exc:
                        assert exc.code == -1003
                        statuses.append(exc.status_code)
                        if exc.status_code == 418:
                            assert "banned" in exc.message
                            break
                        assert "Too many requests" in exc.message
                assert statuses == [429, 429, 418]
            finally:
                await client.close_connection()

    asyncio.run(scenario())
