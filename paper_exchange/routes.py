"""The route table: method + path -> service method, security type, request weight, order flag.

Weights follow Binance's weight table: ``weight`` applies with a ``symbol``
parameter, ``weight_no_symbol`` without one; klines weigh by ``limit`` (<100: 1, <500: 2,
<=1000: 5, else 10; default limit 500 -> 5, an unparsable limit weighs as the default since the
engine refuses it anyway).  New orders weigh 0 on REQUEST_WEIGHT and count 1 on ORDERS.

Security types as Binance names them: NONE and MARKET_DATA are public; USER_DATA and TRADE need
the API key and a signature; USER_STREAM (listenKey) needs the key only.  Listen-key routes are
served by the transport itself (``user_stream``), so their ``target`` is not a service method.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

logger = logging.getLogger(__name__)


class Security(enum.Enum):
    NONE = "NONE"
    MARKET_DATA = "MARKET_DATA"
    USER_DATA = "USER_DATA"
    TRADE = "TRADE"
    USER_STREAM = "USER_STREAM"

    @property
    def signed(self) -> bool:
        return self in (Security.USER_DATA, Security.TRADE)

    @property
    def needs_key(self) -> bool:
        return self in (Security.USER_DATA, Security.TRADE, Security.USER_STREAM)


def klines_weight(params: Mapping[str, str]) -> int:
    """Request weight of ``GET /fapi/v1/klines`` by its ``limit``."""
    raw = params.get("limit")
    limit = 500
    if raw is not None and raw.isdigit() and len(raw) < 10:
        limit = int(raw)
    if limit < 100:
        return 1
    if limit < 500:
        return 2
    if limit <= 1000:
        return 5
    return 10


@dataclass(frozen=True, slots=True)
class Route:
    """One endpoint.  ``target`` is the service method name (or the listen-key operation)."""

    method: str
    path: str
    target: str
    security: Security
    weight: int = 1
    weight_no_symbol: int | None = None
    is_order: bool = False
    weight_fn: Callable[[Mapping[str, str]], int] | None = None

    def weight_of(self, params: Mapping[str, str]) -> int:
        """The REQUEST_WEIGHT this request costs."""
        if self.weight_fn is not None:
            return self.weight_fn(params)
        if self.weight_no_symbol is not None and not params.get("symbol"):
            return self.weight_no_symbol
        return self.weight


_N = Security.NONE
_M = Security.MARKET_DATA
_U = Security.USER_DATA
_T = Security.TRADE
_S = Security.USER_STREAM

ROUTES: tuple[Route, ...] = (
    # Spot ping/time: python-binance's AsyncClient.create() calls them.
    Route("GET", "/api/v3/ping", "ping", _N),
    Route("GET", "/api/v3/time", "time", _N),
    Route("GET", "/fapi/v1/ping", "ping", _N),
    Route("GET", "/fapi/v1/time", "time", _N),
    Route("GET", "/fapi/v1/exchangeInfo", "exchange_info", _N),
    Route("GET", "/fapi/v1/klines", "klines", _M, weight_fn=klines_weight),
    Route("GET", "/fapi/v1/ticker/price", "ticker_price", _M, 1, 2),
    Route("GET", "/fapi/v2/ticker/price", "ticker_price", _M, 1, 2),
    Route("GET", "/fapi/v1/ticker/24hr", "ticker_24hr", _M, 1, 40),
    Route("GET", "/fapi/v1/premiumIndex", "premium_index", _M, 1, 10),
    Route("POST", "/fapi/v1/order", "new_order", _T, 0, is_order=True),
    Route("GET", "/fapi/v1/order", "query_order", _U),
    Route("DELETE", "/fapi/v1/order", "cancel_order", _T),
    Route("GET", "/fapi/v1/openOrders", "open_orders", _U, 1, 40),
    Route("DELETE", "/fapi/v1/allOpenOrders", "cancel_all_open_orders", _T),
    Route("POST", "/fapi/v1/algoOrder", "new_algo_order", _T, 0, is_order=True),
    Route("GET", "/fapi/v1/algoOrder", "query_algo_order", _U),
    Route("DELETE", "/fapi/v1/algoOrder", "cancel_algo_order", _T),
    Route("GET", "/fapi/v1/openAlgoOrders", "open_algo_orders", _U),
    Route("GET", "/fapi/v1/algoOpenOrders", "open_algo_orders", _U),
    Route("GET", "/fapi/v1/userTrades", "user_trades", _U, 5),
    Route("GET", "/fapi/v2/balance", "balance", _U, 5),
    Route("GET", "/fapi/v3/balance", "balance", _U, 5),
    Route("GET", "/fapi/v2/account", "account_v2", _U, 5),
    Route("GET", "/fapi/v3/account", "account_v3", _U, 5),
    Route("GET", "/fapi/v2/positionRisk", "position_risk_v2", _U, 5),
    Route("GET", "/fapi/v3/positionRisk", "position_risk_v3", _U, 5),
    Route("POST", "/fapi/v1/leverage", "set_leverage", _T),
    Route("POST", "/fapi/v1/marginType", "set_margin_type", _T),
    Route("POST", "/fapi/v1/positionSide/dual", "set_dual_side", _T),
    Route("GET", "/fapi/v1/positionSide/dual", "get_dual_side", _U, 30),
    Route("POST", "/fapi/v1/listenKey", "listen_key_create", _S),
    Route("PUT", "/fapi/v1/listenKey", "listen_key_keepalive", _S),
    Route("DELETE", "/fapi/v1/listenKey", "listen_key_delete", _S),
)

# Endpoints beyond the protocol's core set: served only when the service has the method (the
# real service does; a minimal one need not).  ccxt's fetch_positions reads leverageBracket; the
# coordinator reads bookTicker (maker entries at the touch) and income (funding per trade).
OPTIONAL_ROUTES: tuple[Route, ...] = (
    Route("GET", "/fapi/v1/leverageBracket", "leverage_bracket", _U),
    Route("GET", "/fapi/v1/ticker/bookTicker", "book_ticker", _M, 2, 5),
    Route("GET", "/fapi/v1/income", "income", _U, 30),
)

LISTEN_KEY_TARGETS = frozenset({"listen_key_create", "listen_key_keepalive", "listen_key_delete"})

# Weight of a request that matches no route (404/405): Binance still counts it.
UNMATCHED_WEIGHT = 1


def route_index(routes: tuple[Route, ...] = ROUTES) -> dict[tuple[str, str], Route]:
    """``(method, path) -> Route``; refuses duplicates."""
    index: dict[tuple[str, str], Route] = {}
    for route in routes:
        key = (route.method, route.path)
        if key in index:
            raise ValueError(f"duplicate route {route.method} {route.path}")
        index[key] = route
    return index


def paths_by_method(routes: tuple[Route, ...] = ROUTES) -> dict[str, list[str]]:
    """``path -> [methods]`` (for 405 replies and registration)."""
    table: dict[str, list[str]] = {}
    for route in routes:
        table.setdefault(route.path, []).append(route.method)
    return table
