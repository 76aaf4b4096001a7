"""End to end: ccxt's ``binanceusdm`` against the REAL engine over real HTTP on 127.0.0.1.

``load_markets`` parses the engine's exchangeInfo (precision and limits from the filters); every
endpoint Xylen uses goes through ccxt's unified methods (conditional types routed to algoOrder by
ccxt itself), or its implicit API methods where there is no unified one (listenKey, a STOP_MARKET
sent to /order); each error code arrives as the ccxt exception class of ccxt's own
error table (``linear`` table merged).  Real BTCUSDT 5m candles (``e2e_support``); no fakes.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from paper_exchange.tests.e2e_support import (
    CCXT_SYMBOL,
    START_MS,
    SYMBOL,
    candle_root,
    ccxt_exchange,
    make_service,
    near,
    serve,
    transport,
)
from paper_exchange.tests.test_transport_support import SECRET

ccxt = pytest.importorskip("ccxt.async_support")


@pytest.fixture(scope="module")
def candles(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    return candle_root(tmp_path_factory, shared_data)


def test_load_markets_and_market_data(candles: Path, tmp_path: Path) -> None:
    service = make_service(candles, tmp_path)

    async def scenario() -> None:
        async with serve(service) as url:
            exchange = ccxt_exchange(url)
            try:
                markets = await exchange.load_markets()
                market = markets[CCXT_SYMBOL]
                assert market["id"] == SYMBOL and market["swap"] and market["linear"] and market["active"]
                assert market["settle"] == "USDT" and market["contractSize"] == 1.0
                assert market["precision"]["amount"] == 0.001 and market["precision"]["price"] == 0.1
                assert (
                    market["limits"]["amount"]["min"] == 0.001 and market["limits"]["amount"]["max"] == 1000
                )
                assert market["limits"]["market"]["max"] == 120
                assert market["limits"]["cost"]["min"] == 100
                assert 0 < market["limits"]["price"]["min"] < market["limits"]["price"]["max"]
                assert exchange.amount_to_precision(CCXT_SYMBOL, 0.01234) == "0.012"
                assert exchange.price_to_precision(CCXT_SYMBOL, 43000.123) == "43000.1"

                assert abs(await exchange.fetch_time() - time.time() * 1000) < 5000
                candles_ = await exchange.fetch_ohlcv(CCXT_SYMBOL, "5m", limit=3)
                assert len(candles_) == 3 and candles_[-1][0] == START_MS
                assert all(isinstance(v, float) for v in candles_[0][1:])
                ticker = await exchange.fetch_ticker(CCXT_SYMBOL)  # /ticker/24hr
                assert ticker["symbol"] == CCXT_SYMBOL and ticker["last"] > 0
                assert ticker["low"] <= ticker["last"] <= ticker["high"]
                prices = await exchange.fetch_last_prices([CCXT_SYMBOL])  # /v2/ticker/price
                assert prices[CCXT_SYMBOL]["price"] == ticker["last"]
                funding = await exchange.fetch_funding_rate(CCXT_SYMBOL)  # /premiumIndex
                assert funding["markPrice"] == ticker["last"] and funding["fundingTimestamp"] > START_MS
                assert isinstance(funding["fundingRate"], float)
                with pytest.raises(ccxt.BadSymbol):
                    await exchange.fetch_ticker("DOGE/USDT:USDT")
            finally:
                await exchange.close()

    asyncio.run(scenario())


def test_orders_positions_and_account(candles: Path, tmp_path: Path) -> None:
    service = make_service(candles, tmp_path)

    async def scenario() -> None:
        async with serve(service) as url:
            exchange = ccxt_exchange(url)
            try:
                await run_trading(exchange)
            finally:
                await exchange.close()

    asyncio.run(scenario())


async def run_trading(ex: Any) -> None:
    s = CCXT_SYMBOL
    await ex.load_markets()
    # account settings
    mode = await ex.fetch_position_mode(s)
    assert mode["hedged"] is False
    await ex.set_position_mode(True)
    assert (await ex.fetch_position_mode(s))["hedged"] is True
    await ex.set_position_mode(False)
    lev = await ex.set_leverage(10, s)
    assert lev["leverage"] == 10
    await ex.set_margin_mode("isolated", s)
    assert (await ex.set_margin_mode("cross", s))["code"] == 200

    price = Decimal(str((await ex.fetch_ticker(s))["last"]))

    # LIMIT GTC: create / fetch / open orders / cancel
    rest = await ex.create_order(s, "limit", "buy", 0.01, float(near(price, "0.98")))
    assert rest["status"] == "open" and rest["clientOrderId"].startswith("x-cvBPrNm9")
    assert rest["timeInForce"] == "GTC" and rest["amount"] == 0.01
    got = await ex.fetch_order(rest["id"], s)
    assert got["id"] == rest["id"] and got["status"] == "open"
    assert [o["id"] for o in await ex.fetch_open_orders(s)] == [rest["id"]]
    cancelled = await ex.cancel_order(rest["id"], s)
    assert cancelled["status"] == "canceled"

    # post-only (GTX) resting, then cancel-all
    maker = await ex.create_order(s, "limit", "sell", 0.01, float(near(price, "1.02")), {"postOnly": True})
    assert maker["status"] == "open" and maker["postOnly"] is True and maker["timeInForce"] == "PO"
    await ex.cancel_all_orders(s)
    assert await ex.fetch_open_orders(s) == []
    assert (await ex.fetch_order(maker["id"], s))["status"] == "canceled"

    # IOC that cannot fill expires
    ioc = await ex.create_order(s, "limit", "buy", 0.01, float(near(price, "0.99")), {"timeInForce": "IOC"})
    assert ioc["status"] == "expired" and ioc["filled"] == 0

    # MARKET entry (ccxt asks for RESULT)
    entry = await ex.create_order(s, "market", "buy", 0.01)
    assert entry["status"] == "closed" and entry["filled"] == 0.01 and entry["average"] > 0

    (pos,) = await ex.fetch_positions([s])  # /v3/positionRisk
    assert pos["symbol"] == s and pos["side"] == "long" and pos["contracts"] == 0.01
    assert pos["entryPrice"] == entry["average"] and pos["marginMode"] == "cross"
    balance = await ex.fetch_balance()  # /v3/account
    assert 0 < balance["USDT"]["total"] < 10_000 and balance["USDT"]["used"] > 0

    # bracket: ccxt routes stopLossPrice / takeProfitPrice to /algoOrder itself
    stop = await ex.create_order(
        s, "market", "sell", None, None, {"stopLossPrice": float(near(price, "0.97")), "closePosition": True}
    )
    assert stop["info"]["orderType"] == "STOP_MARKET" and stop["info"]["closePosition"] is True
    assert stop["info"]["algoStatus"] == "NEW"
    take = await ex.create_order(
        s,
        "market",
        "sell",
        None,
        None,
        {"takeProfitPrice": float(near(price, "1.03")), "closePosition": True},
    )
    assert take["info"]["orderType"] == "TAKE_PROFIT_MARKET"
    assert take["triggerPrice"] == float(near(price, "1.03"))
    algos = await ex.fetch_open_orders(s, params={"trigger": True})  # /openAlgoOrders
    assert sorted(o["id"] for o in algos) == sorted([stop["id"], take["id"]])
    fetched = await ex.fetch_order(stop["id"], s, {"trigger": True})  # GET /algoOrder
    assert fetched["id"] == stop["id"] and fetched["status"] == "open"
    await ex.cancel_order(take["id"], s, {"trigger": True})  # DELETE /algoOrder
    assert [o["id"] for o in await ex.fetch_open_orders(s, params={"trigger": True})] == [stop["id"]]

    # reduceOnly exit; trades
    exit_ = await ex.create_order(s, "market", "sell", 0.01, None, {"reduceOnly": True})
    assert exit_["status"] == "closed" and exit_["reduceOnly"] is True
    assert all(p["contracts"] in (0, None) for p in await ex.fetch_positions([s]))
    trades = await ex.fetch_my_trades(s)
    assert [t["order"] for t in trades] == [entry["id"], exit_["id"]]
    assert (
        trades[0]["side"] == "buy" and trades[1]["side"] == "sell" and trades[1]["fee"]["currency"] == "USDT"
    )
    await ex.cancel_order(stop["id"], s, {"trigger": True})

    # listen key through ccxt's implicit API (what ccxt.pro calls)
    key = (await ex.fapiPrivatePostListenKey())["listenKey"]
    assert key
    await ex.fapiPrivatePutListenKey({"listenKey": key})
    assert await ex.fapiPrivateDeleteListenKey({"listenKey": key}) == {}
    with pytest.raises(ccxt.AuthenticationError):  # -1125 in ccxt's table
        await ex.fapiPrivatePutListenKey({"listenKey": key})


def test_each_error_code_is_its_ccxt_exception(candles: Path, tmp_path: Path) -> None:
    service = make_service(candles, tmp_path)

    async def scenario() -> None:
        async with serve(service) as url:
            ex = ccxt_exchange(url)
            s = CCXT_SYMBOL
            try:
                price = Decimal(str((await ex.fetch_ticker(s))["last"]))
                below = float(near(price, "0.99"))
                raw = {"symbol": SYMBOL, "side": "BUY", "type": "LIMIT", "timeInForce": "GTC"}
                cases: list[tuple[Any, type[Exception], str]] = [
                    # ccxt rounds amounts itself: send the over-precise quantity through the raw API
                    (
                        ex.fapiPrivatePostOrder({**raw, "quantity": "0.0105", "price": str(below)}),
                        ccxt.BadRequest,
                        "-1111",
                    ),
                    (ex.create_order(s, "limit", "buy", 10, below), ccxt.InsufficientFunds, "-2019"),
                    (
                        ex.create_order(
                            s, "market", "sell", 0.01, None, {"stopLossPrice": float(near(price, "1.01"))}
                        ),
                        ccxt.OrderImmediatelyFillable,
                        "-2021",
                    ),
                    (
                        ex.create_order(s, "market", "sell", 0.01, None, {"reduceOnly": True}),
                        ccxt.InvalidOrder,
                        "-2022",
                    ),
                    (
                        ex.fapiPrivatePostOrder({**raw, "quantity": "0.002", "price": str(below)}),
                        ccxt.InvalidOrder,
                        "-4164",
                    ),
                    (
                        ex.create_order(
                            s, "limit", "buy", 0.01, float(near(price, "1.01")), {"postOnly": True}
                        ),
                        ccxt.OrderNotFillable,
                        "-5022",
                    ),
                    (
                        ex.fapiPrivatePostOrder(
                            {
                                "symbol": SYMBOL,
                                "side": "SELL",
                                "type": "STOP_MARKET",
                                "quantity": "0.010",
                                "stopPrice": near(price, "0.9"),
                            }
                        ),
                        ccxt.InvalidOrder,
                        "-4120",
                    ),
                    (ex.cancel_order("987654", s), ccxt.OrderNotFound, "-2011"),
                    (ex.fetch_order("987654", s), ccxt.OrderNotFound, "-2013"),
                    (ex.cancel_order("987654", s, {"trigger": True}), ccxt.OrderNotFound, "-2011"),
                ]
                for call, cls, code in cases:
                    with pytest.raises(cls) as err:
                        await call
                    assert code in str(err.value), str(err.value)
                # the class is exact, not a broader one that happens to match
                with pytest.raises(ccxt.InsufficientFunds):
                    await ex.create_order(s, "market", "buy", 100)
                # -4046: ccxt matches it on the message (throwMarginModeAlreadySet is on by default)
                with pytest.raises(ccxt.MarginModeAlreadySet, match="-4046"):
                    await ex.set_margin_mode("cross", s)
                ex.options["setMarginMode"]["throwMarginModeAlreadySet"] = False
                assert (await ex.set_margin_mode("cross", s))["code"] == -4046
                assert await ex.fetch_open_orders(s) == []

                ex.options["timeDifference"] = 60_000  # our clock 60 s behind the server's
                with pytest.raises(ccxt.InvalidNonce, match="-1021"):
                    await ex.fetch_balance()
            finally:
                await ex.close()
            for key, secret, code in (("test-key", SECRET + "x", "-1022"), ("no-such-key", SECRET, "-2015")):
                bad = ccxt_exchange(url, key=key, secret=secret)
                try:
                    with pytest.raises(ccxt.AuthenticationError, match=code):
                        await bad.fetch_balance()
                finally:
                    await bad.close()

    asyncio.run(scenario())


def test_429_then_418_are_ddos_protection(candles: Path, tmp_path: Path) -> None:
    service = make_service(candles, tmp_path)
    frozen = time.time()  # one rate-limit window for the whole test (only public endpoints below)

    async def scenario() -> None:
        async with serve(
            service, transport(weight_limit_1m=6, ban_after_429s=2), clock=lambda: frozen
        ) as url:
            ex = ccxt_exchange(url, enableRateLimit=False)
            try:
                seen: list[str] = []
                for _ in range(20):
                    try:
                        await ex.fetch_ohlcv(CCXT_SYMBOL, "5m", limit=5)
                    except ccxt.DDoSProtection as exc:
                        assert "-1003" in str(exc)
                        status = "418" if " 418 " in str(exc) else "429" if " 429 " in str(exc) else "?"
                        seen.append(status)
                        if status == "418":
                            break
                assert seen == ["429", "429", "418"]
            finally:
                await ex.close()

    asyncio.run(scenario())
