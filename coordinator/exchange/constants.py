"""Binance USDⓈ-M protocol constants: hosts, endpoints with their weights, error-code sets.

Facts come from Binance's USDⓈ-M futures API documentation (hosts, endpoints and their weights,
error codes).  The error-code sets here are the ONE place that decides how a venue code is treated;
``transport`` reads them when it translates a reply into :mod:`coordinator.exchange.errors`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from coordinator.exchange.priority import Priority
from xylen.config.schema import ExchangeConfig, ExchangeMode

logger = logging.getLogger(__name__)

LIVE_REST_URL = "https://fapi.binance.com"
TESTNET_REST_URL = "https://demo-fapi.binance.com"
LIVE_WS_URL = "wss://fstream.binance.com"
TESTNET_WS_URL = "wss://fstream.binancefuture.com"
USER_STREAM_PATH = "/private/ws"

API_KEY_HEADER = "X-MBX-APIKEY"
USED_WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"
ORDER_COUNT_10S_HEADER = "X-MBX-ORDER-COUNT-10S"
ORDER_COUNT_1M_HEADER = "X-MBX-ORDER-COUNT-1M"
RETRY_AFTER_HEADER = "Retry-After"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One REST route: method, path, REQUEST_WEIGHT (with/without ``symbol``) and how it may be retried.

    ``signed``: needs ``timestamp`` + ``signature`` (TRADE / USER_DATA).  ``keyed``: needs the API key
    header only (listen key).  ``is_order``: counts against the ORDERS limits.  ``idempotent``: sending
    it twice has the effect of sending it once (GETs, cancels by id, settings); an order placement is
    not, so a timeout on it means its outcome is unknown.  ``priority``: the rate limiter's order
    (:class:`~coordinator.exchange.priority.Priority`); unset, keyed and signed requests are account
    reads and the others market data.
    """

    method: str
    path: str
    weight: int = 1
    weight_no_symbol: int | None = None
    signed: bool = False
    keyed: bool = False
    is_order: bool = False
    idempotent: bool = True
    priority: Priority | None = None

    @property
    def default_priority(self) -> Priority:
        """The priority of a request to this endpoint when the caller does not give one."""
        if self.priority is not None:
            return self.priority
        return Priority.ACCOUNT if self.signed or self.keyed else Priority.MARKET

    def weight_of(self, params: Mapping[str, str]) -> int:
        """The REQUEST_WEIGHT this request costs, by Binance's weight table."""
        if self.weight_no_symbol is not None and "symbol" not in params:
            return self.weight_no_symbol
        return self.weight


PING = Endpoint("GET", "/fapi/v1/ping")
TIME = Endpoint("GET", "/fapi/v1/time")
EXCHANGE_INFO = Endpoint("GET", "/fapi/v1/exchangeInfo")
NEW_ORDER = Endpoint(
    "POST", "/fapi/v1/order", 0, signed=True, is_order=True, idempotent=False, priority=Priority.ENTRY
)
GET_ORDER = Endpoint("GET", "/fapi/v1/order", signed=True)
CANCEL_ORDER = Endpoint("DELETE", "/fapi/v1/order", signed=True, priority=Priority.CLOSE)
OPEN_ORDERS = Endpoint("GET", "/fapi/v1/openOrders", 1, 40, signed=True)
NEW_ALGO_ORDER = Endpoint(
    "POST", "/fapi/v1/algoOrder", 0, signed=True, is_order=True, idempotent=False, priority=Priority.PROTECT
)
GET_ALGO_ORDER = Endpoint("GET", "/fapi/v1/algoOrder", signed=True)
CANCEL_ALGO_ORDER = Endpoint("DELETE", "/fapi/v1/algoOrder", signed=True, priority=Priority.PROTECT)
OPEN_ALGO_ORDERS = Endpoint("GET", "/fapi/v1/openAlgoOrders", 1, 40, signed=True)
USER_TRADES = Endpoint("GET", "/fapi/v1/userTrades", 5, signed=True)
BOOK_TICKER = Endpoint("GET", "/fapi/v1/ticker/bookTicker", 2, 5)
INCOME = Endpoint("GET", "/fapi/v1/income", 30, signed=True)
BALANCE = Endpoint("GET", "/fapi/v3/balance", 5, signed=True)
POSITION_RISK = Endpoint("GET", "/fapi/v3/positionRisk", 5, signed=True)
LEVERAGE = Endpoint("POST", "/fapi/v1/leverage", signed=True)
MARGIN_TYPE = Endpoint("POST", "/fapi/v1/marginType", signed=True)
LISTEN_KEY_CREATE = Endpoint("POST", "/fapi/v1/listenKey", keyed=True)
LISTEN_KEY_KEEPALIVE = Endpoint("PUT", "/fapi/v1/listenKey", keyed=True)
LISTEN_KEY_CLOSE = Endpoint("DELETE", "/fapi/v1/listenKey", keyed=True)

# -- error codes ----------------------------------------------------------------------------------
CODE_TIMESTAMP = -1021  # outside recvWindow: resync the clock offset, retry once
CODE_TOO_MANY_REQUESTS = -1003  # 429 / 418 (banned)
CODE_TOO_MANY_ORDERS = -1015  # 429 on the ORDERS limits
CODE_NO_SUCH_LISTEN_KEY = -1125
CODE_MARGIN_TYPE_UNCHANGED = -4046  # "No need to change margin type." = success
CODE_POSITION_MODE_UNCHANGED = -4059

# The request failed before anything was executed: safe to repeat (after a wait).
RETRYABLE_CODES = frozenset({-1001, -1003, -1004, -1008, -1015, -1016, CODE_TIMESTAMP})
# The backend may or may not have executed it ("execution status unknown").
UNKNOWN_OUTCOME_CODES = frozenset({-1000, -1006, -1007})
# The order / algo order / listen key does not exist (or is no longer cancelable).
NOT_FOUND_CODES = frozenset({-2011, -2013, CODE_NO_SUCH_LISTEN_KEY})
# Credentials or permissions: nothing will work until a human fixes the config.
FATAL_CODES = frozenset({-1002, -1022, -2014, -2015})
# Replies that are errors on the wire but mean "already so".
SUCCESS_CODES = frozenset({CODE_MARGIN_TYPE_UNCHANGED, CODE_POSITION_MODE_UNCHANGED})

# 5xx messages that Binance documents as "failed, not executed"; any other 5xx on a non-idempotent
# request, and "Unknown error", mean the outcome is unknown.
MSG_UNKNOWN_ERROR = "Unknown error"
FAILED_5XX_MESSAGES = (
    "Service Unavailable",
    "Internal error; unable to process your request",
    "Request throttled by system-level protection",
)


def rest_url(config: ExchangeConfig) -> str:
    """The REST base URL of the configured mode (paper: ``config.paper_url``)."""
    return config.base_url.rstrip("/")


def ws_url(config: ExchangeConfig) -> str:
    """The WebSocket root of the configured mode; paper derives it from ``paper_url`` (http -> ws)."""
    if config.mode is ExchangeMode.PAPER:
        base = config.paper_url.rstrip("/")
        return "ws" + base[len("http") :] if base.startswith("http") else base
    if config.mode is ExchangeMode.TESTNET:
        return TESTNET_WS_URL
    return LIVE_WS_URL
