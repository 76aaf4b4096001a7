"""Shared helpers of the transport tests: a fake service at the seam, and real servers.

``FakeService`` is a FAKE AT THE SEAM: a small in-memory implementation of
:class:`paper_exchange.protocol.ExchangeService` written for the transport tests only.  It does
no matching, margin or replay; it validates the few parameters it reads (answering ``-1102`` /
``-1100`` like Binance), stores orders in a dict and emits one ``ORDER_TRADE_UPDATE`` per new or
cancelled order.  The transport tests run real HTTP against it on 127.0.0.1; the engine's own
tests and the end-to-end tests exercise the real service.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

from aiohttp import web

from paper_exchange.app import create_app
from paper_exchange.auth import sign
from paper_exchange.faults import Faults
from paper_exchange.protocol import BinanceError, EventCallback, ExchangeService
from paper_exchange.settings import TransportSettings

KEY = "test-key"
SECRET = "test-secret"
OTHER_KEY = "other-key"
OTHER_SECRET = "other-secret"
KEYS = {KEY: SECRET, OTHER_KEY: OTHER_SECRET}

EXCHANGE_INFO: dict[str, Any] = {
    "timezone": "UTC",
    "serverTime": 0,
    "futuresType": "U_MARGINED",
    "exchangeFilters": [],
    "assets": [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"}],
    "rateLimits": [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400},
        {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
    ],
    "symbols": [
        {
            "symbol": "BTCUSDT",
            "pair": "BTCUSDT",
            "contractType": "PERPETUAL",
            "deliveryDate": 4133404800000,
            "onboardDate": 1569398400000,
            "status": "TRADING",
            "maintMarginPercent": "2.5000",
            "requiredMarginPercent": "5.0000",
            "baseAsset": "BTC",
            "quoteAsset": "USDT",
            "marginAsset": "USDT",
            "pricePrecision": 2,
            "quantityPrecision": 3,
            "baseAssetPrecision": 8,
            "quotePrecision": 8,
            "underlyingType": "COIN",
            "underlyingSubType": [],
            "triggerProtect": "0.0500",
            "liquidationFee": "0.012500",
            "marketTakeBound": "0.05",
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": "0.10", "maxPrice": "1000000", "tickSize": "0.10"},
                {"filterType": "LOT_SIZE", "minQty": "0.001", "maxQty": "1000", "stepSize": "0.001"},
                {"filterType": "MARKET_LOT_SIZE", "minQty": "0.001", "maxQty": "120", "stepSize": "0.001"},
                {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
                {"filterType": "MIN_NOTIONAL", "notional": "100"},
                {
                    "filterType": "PERCENT_PRICE",
                    "multiplierUp": "1.0500",
                    "multiplierDown": "0.9500",
                    "multiplierDecimal": "4",
                },
            ],
            "orderTypes": [
                "LIMIT",
                "MARKET",
                "STOP",
                "STOP_MARKET",
                "TAKE_PROFIT",
                "TAKE_PROFIT_MARKET",
                "TRAILING_STOP_MARKET",
            ],
            "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
        }
    ],
}


DECIMAL = "^([0-9]{1,20})(\\.[0-9]{1,20})?$"


def _now_ms() -> int:
    return int(time.time() * 1000)


def _required(params: Mapping[str, str], *names: str) -> None:
    for name in names:
        if not params.get(name):
            raise BinanceError(
                -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
            )


def _symbol(params: Mapping[str, str]) -> str:
    _required(params, "symbol")
    if params["symbol"] != "BTCUSDT":
        raise BinanceError(-1121, "Invalid symbol.")
    return params["symbol"]


def _decimal_str(params: Mapping[str, str], name: str) -> str:
    value = params.get(name, "")
    try:
        number = float(value)
    except ValueError:
        raise BinanceError(
            -1100,
            f"Illegal characters found in parameter '{name}'; legal range is '{DECIMAL}'.",
        ) from None
    if not number > 0 or number != number:
        raise BinanceError(-4003, "Quantity less than zero.")
    return value


class FakeService:
    """A fake :class:`ExchangeService` (see the module docstring): enough for the transport."""

    def __init__(self) -> None:
        self.orders: dict[int, dict[str, Any]] = {}
        self.calls: list[tuple[str, str, dict[str, str]]] = []
        self.callbacks: list[EventCallback] = []
        self.advances = 0
        self.advance_error: Exception | None = None
        self.closed = False
        self._next_id = 1000

    # -- helpers ----------------------------------------------------------------------------
    def _record(self, name: str, account: str, params: Mapping[str, str]) -> None:
        self.calls.append((name, account, dict(params)))
        if params.get("boom") == "1":
            raise RuntimeError("fake service exploded on purpose")

    def emit(self, account: str, event: dict[str, Any]) -> None:
        for callback in self.callbacks:
            callback(account, event)

    def _order_event(self, account: str, order: dict[str, Any], execution: str) -> None:
        now = _now_ms()
        self.emit(
            account,
            {
                "e": "ORDER_TRADE_UPDATE",
                "E": now,
                "T": now,
                "o": {
                    "s": order["symbol"],
                    "c": order["clientOrderId"],
                    "S": order["side"],
                    "o": order["type"],
                    "q": order["origQty"],
                    "p": order["price"],
                    "x": execution,
                    "X": order["status"],
                    "i": order["orderId"],
                },
            },
        )

    def _find(self, account: str, params: Mapping[str, str]) -> dict[str, Any]:
        _symbol(params)
        order_id, client_id = params.get("orderId"), params.get("origClientOrderId")
        if not order_id and not client_id:
            raise BinanceError(
                -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!"
            )
        for order in self.orders.values():
            if order["account"] != account:
                continue
            if (order_id and str(order["orderId"]) == order_id) or (
                client_id and order["clientOrderId"] == client_id
            ):
                return order
        raise BinanceError(-2013, "Order does not exist.")

    @staticmethod
    def _public(order: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in order.items() if k != "account"}

    # -- public -----------------------------------------------------------------------------
    def ping(self, params: Mapping[str, str]) -> Any:
        self._record("ping", "", params)
        return {}

    def time(self, params: Mapping[str, str]) -> Any:
        self._record("time", "", params)
        return {"serverTime": _now_ms()}

    def exchange_info(self, params: Mapping[str, str]) -> Any:
        self._record("exchange_info", "", params)
        return {**EXCHANGE_INFO, "serverTime": _now_ms()}

    def klines(self, params: Mapping[str, str]) -> Any:
        self._record("klines", "", params)
        _symbol(params)
        _required(params, "interval")
        return [[0, "1", "2", "0.5", "1.5", "10", 299999, "15", 3, "5", "7.5", "0"]]

    def ticker_price(self, params: Mapping[str, str]) -> Any:
        self._record("ticker_price", "", params)
        entry = {"symbol": "BTCUSDT", "price": "30000.00", "time": _now_ms()}
        if params.get("symbol"):
            _symbol(params)
            return entry
        return [entry]

    def ticker_24hr(self, params: Mapping[str, str]) -> Any:
        self._record("ticker_24hr", "", params)
        now = _now_ms()
        entry = {
            "symbol": "BTCUSDT",
            "priceChange": "10.0",
            "priceChangePercent": "0.033",
            "weightedAvgPrice": "30000.0",
            "lastPrice": "30000.00",
            "lastQty": "0.010",
            "openPrice": "29990.00",
            "highPrice": "30100.00",
            "lowPrice": "29900.00",
            "volume": "1000.000",
            "quoteVolume": "30000000.00",
            "openTime": now - 86_400_000,
            "closeTime": now,
            "firstId": 1,
            "lastId": 100,
            "count": 100,
        }
        if params.get("symbol"):
            _symbol(params)
            return entry
        return [entry]

    def premium_index(self, params: Mapping[str, str]) -> Any:
        self._record("premium_index", "", params)
        return {
            "symbol": "BTCUSDT",
            "markPrice": "30000.00",
            "indexPrice": "30000.00",
            "estimatedSettlePrice": "30000.00",
            "lastFundingRate": "0.0001",
            "interestRate": "0.0001",
            "nextFundingTime": _now_ms() + 3_600_000,
            "time": _now_ms(),
        }

    # -- signed -----------------------------------------------------------------------------
    def new_order(self, account: str, params: Mapping[str, str]) -> Any:
        self._record("new_order", account, params)
        symbol = _symbol(params)
        _required(params, "side", "type", "quantity")
        if params["side"] not in ("BUY", "SELL"):
            raise BinanceError(-1117, "Invalid side.")
        if params["type"] not in ("LIMIT", "MARKET"):
            raise BinanceError(-1116, "Invalid orderType.")
        quantity = _decimal_str(params, "quantity")
        price = "0"
        if params["type"] == "LIMIT":
            _required(params, "price", "timeInForce")
            price = _decimal_str(params, "price")
        self._next_id += 1
        now = _now_ms()
        order = {
            "account": account,
            "orderId": self._next_id,
            "symbol": symbol,
            "status": "NEW",
            "clientOrderId": params.get("newClientOrderId") or f"fake{self._next_id}",
            "price": price,
            "avgPrice": "0",
            "origQty": quantity,
            "executedQty": "0",
            "cumQty": "0",
            "cumQuote": "0",
            "timeInForce": params.get("timeInForce", "GTC"),
            "type": params["type"],
            "reduceOnly": params.get("reduceOnly") == "true",
            "closePosition": False,
            "side": params["side"],
            "positionSide": params.get("positionSide", "BOTH"),
            "stopPrice": "0",
            "workingType": "CONTRACT_PRICE",
            "priceProtect": False,
            "origType": params["type"],
            "priceMatch": "NONE",
            "selfTradePreventionMode": "EXPIRE_MAKER",
            "goodTillDate": 0,
            "updateTime": now,
        }
        self.orders[self._next_id] = order
        self._order_event(account, order, "NEW")
        return self._public(order)

    def query_order(self, account: str, params: Mapping[str, str]) -> Any:
        self._record("query_order", account, params)
        return self._public(self._find(account, params))

    def cancel_order(self, account: str, params: Mapping[str, str]) -> Any:
        self._record("cancel_order", account, params)
        order = self._find(account, params)
        if order["status"] != "NEW":
            raise BinanceError(-2011, "Unknown order sent.")
        order["status"] = "CANCELED"
        self._order_event(account, order, "CANCELED")
        return self._public(order)

    def open_orders(self, account: str, params: Mapping[str, str]) -> Any:
        self._record("open_orders", account, params)
        return [
            self._public(o) for o in self.orders.values() if o["account"] == account and o["status"] == "NEW"
        ]

    def cancel_all_open_orders(self, account: str, params: Mapping[str, str]) -> Any:
        self._record("cancel_all_open_orders", account, params)
        _symbol(params)
        for order in self.orders.values():
            if order["account"] == account and order["status"] == "NEW":
                order["status"] = "CANCELED"
        return {"code": 200, "msg": "The operation of cancel all open order is done."}

    def new_algo_order(self, account: str, params: Mapping[str, str]) -> Any:
        self._record("new_algo_order", account, params)
        _symbol(params)
        _required(params, "algoType", "side", "type")
        return {"algoId": 1, "clientAlgoId": params.get("clientAlgoId", "algo1"), "algoStatus": "NEW"}

    def query_algo_order(self, account: str, params: Mapping[str, str]) -> Any:
        self._record("query_algo_order", account, params)
        raise BinanceError(-2013, "Order does not exist.")

    def cancel_algo_order(self, account: str, params: Mapping[str, str]) -> Any:
        self._record("cancel_algo_order", account, params)
        raise BinanceError(-2011, "Unknown order sent.")

    def open_algo_orders(self, account: str, params: Mapping[str, str]) -> Any:
        self._record("open_algo_orders", account, params)
        return []

    def user_trades(self, account: str, params: Mapping[str, str]) -> Any:
        self._record("user_trades", account, params)
        _symbol(params)
        return []

    def balance(self, account: str, params: Mapping[str, str]) -> Any:
        self._record("balance", account, params)
        return [
            {
                "accountAlias": "paper",
                "asset": "USDT",
                "balance": "10000.00000000",
                "crossWalletBalance": "10000.00000000",
                "crossUnPnl": "0.00000000",
                "availableBalance": "10000.00000000",
                "maxWithdrawAmount": "10000.00000000",
                "marginAvailable": True,
                "updateTime": 0,
            }
        ]

    def _account(self) -> dict[str, Any]:
        return {
            "totalInitialMargin": "0",
            "totalMaintMargin": "0",
            "totalWalletBalance": "10000",
            "totalUnrealizedProfit": "0",
            "totalMarginBalance": "10000",
            "totalPositionInitialMargin": "0",
            "totalOpenOrderInitialMargin": "0",
            "totalCrossWalletBalance": "10000",
            "totalCrossUnPnl": "0",
            "availableBalance": "10000",
            "maxWithdrawAmount": "10000",
            "assets": [
                {
                    "asset": "USDT",
                    "walletBalance": "10000",
                    "unrealizedProfit": "0",
                    "marginBalance": "10000",
                    "maintMargin": "0",
                    "initialMargin": "0",
                    "positionInitialMargin": "0",
                    "openOrderInitialMargin": "0",
                    "crossWalletBalance": "10000",
                    "crossUnPnl": "0",
                    "availableBalance": "10000",
                    "maxWithdrawAmount": "10000",
                    "updateTime": _now_ms(),  # ccxt skips assets whose updateTime is 0
                }
            ],
            "positions": [],
        }

    def account_v2(self, account: str, params: Mapping[str, str]) -> Any:
        self._record("account_v2", account, params)
        return {**self._account(), "canTrade": True, "multiAssetsMargin": False}

    def account_v3(self, account: str, params: Mapping[str, str]) -> Any:
        self._record("account_v3", account, params)
        return self._account()

    def position_risk_v2(self, account: str, params: Mapping[str, str]) -> Any:
        self._record("position_risk_v2", account, params)
        return []

    def position_risk_v3(self, account: str, params: Mapping[str, str]) -> Any:
        self._record("position_risk_v3", account, params)
        return []

    def set_leverage(self, account: str, params: Mapping[str, str]) -> Any:
        self._record("set_leverage", account, params)
        symbol = _symbol(params)
        _required(params, "leverage")
        if not params["leverage"].isdigit() or not 1 <= int(params["leverage"]) <= 125:
            raise BinanceError(-4028, "Leverage is not valid")
        return {"leverage": int(params["leverage"]), "maxNotionalValue": "1000000", "symbol": symbol}

    def set_margin_type(self, account: str, params: Mapping[str, str]) -> Any:
        self._record("set_margin_type", account, params)
        _symbol(params)
        return {"code": 200, "msg": "success"}

    def set_dual_side(self, account: str, params: Mapping[str, str]) -> Any:
        self._record("set_dual_side", account, params)
        return {"code": 200, "msg": "success"}

    def get_dual_side(self, account: str, params: Mapping[str, str]) -> Any:
        self._record("get_dual_side", account, params)
        return {"dualSidePosition": False}

    # -- life cycle -------------------------------------------------------------------------
    def advance(self) -> None:
        self.advances += 1
        if self.advance_error is not None:
            raise self.advance_error

    def subscribe(self, callback: EventCallback) -> None:
        self.callbacks.append(callback)

    def close(self) -> None:
        self.closed = True


def settings(**overrides: Any) -> TransportSettings:
    """Test settings: the two test keys, a fast clock tick, port 0."""
    values: dict[str, Any] = {"api_keys": KEYS, "port": 0, "tick_ms": 20}
    values.update(overrides)
    return TransportSettings(**values)


@contextlib.asynccontextmanager
async def running_app(
    service: ExchangeService | None = None,
    transport: TransportSettings | None = None,
    *,
    faults: Faults | None = None,
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[tuple[str, web.Application]]:
    """A real server on 127.0.0.1 (an ephemeral port): yields ``(base_url, app)``."""
    app = create_app(
        service or FakeService(), transport or settings(), faults=faults or Faults(), clock=clock
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}", app
    finally:
        await runner.cleanup()


def signed(params: Mapping[str, str | int], secret: str = SECRET, *, ts: int | None = None) -> str:
    """A signed query string (``timestamp`` added unless present), signature last."""
    items = dict(params)
    if "timestamp" not in items:
        items["timestamp"] = ts if ts is not None else _now_ms()
    query = urllib.parse.urlencode(items)
    return f"{query}&signature={sign(secret, query)}"


class ServerThread:
    """The app served from a background thread with its own event loop (for sync clients)."""

    def __init__(
        self, service: ExchangeService, transport: TransportSettings, faults: Faults | None = None
    ) -> None:
        self._service = service
        self._settings = transport
        self._faults = faults
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.port = 0
        self._thread = threading.Thread(target=self._run, name="paper-exchange-test-server", daemon=True)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with running_app(self._service, self._settings, faults=self._faults) as (url, _app):
            self.port = int(url.rsplit(":", 1)[1])
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("test server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@contextlib.contextmanager
def server_thread(service: ExchangeService, transport: TransportSettings) -> Iterator[ServerThread]:
    with ServerThread(service, transport) as server:
        yield server


def test_fake_service_satisfies_the_protocol() -> None:
    assert isinstance(FakeService(), ExchangeService)


def test_signed_helper_matches_the_reference_vector() -> None:
    secret = "2b5eb11e18796d12d88f13dc27dbbd02c2cc51ff7059765ed9821957d82bb4d9"
    payload = (
        "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=9000&timeInForce=GTC"
        "&recvWindow=5000&timestamp=1591702613943"
    )
    query = signed(
        {
            "symbol": "BTCUSDT",
            "side": "BUY",
            "type": "LIMIT",
            "quantity": 1,
            "price": 9000,
            "timeInForce": "GTC",
            "recvWindow": 5000,
            "timestamp": 1591702613943,
        },
        secret,
    )
    assert query == payload + "&signature=3c661234138461fcc7a7d8746c6558c9842d4e10870d2ecbedf7777cad694af9"
