"""The seam between the HTTP transport and the exchange core.

The transport (``app``, ``auth``, ``rate_limit``, ``faults``, ``user_stream``) only knows the
:class:`ExchangeService` protocol below: one method per REST endpoint, taking the request
parameters exactly as the strings received, returning a JSON-ready object (dicts, lists,
strings, numbers, bools, ``None``) or raising an API error with ``code``, ``msg`` and
``http_status``.  Methods are synchronous (the engine is deterministic and single-threaded);
an awaitable result is awaited as well, so an async implementation also fits.

Errors: the engine raises ``paper_exchange.engine.errors.ApiError``; the transport raises
:class:`BinanceError` for what it decides itself (auth, rate limits, malformed requests).
:data:`API_ERROR_TYPES` holds both, so the dispatcher catches either without importing the
engine at all when it is absent.

User-data events reach the transport through ``subscribe(callback)``: the service calls
``callback(account, event)`` with the event as a JSON-ready dict (``ORDER_TRADE_UPDATE``,
``ACCOUNT_UPDATE``, ``ALGO_UPDATE``, ...), in the order they happen, on the event-loop thread.
The account is the API key the order came in with.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

logger = logging.getLogger(__name__)

Params = Mapping[str, str]
EventCallback = Callable[[str, dict[str, Any]], None]


class BinanceError(Exception):
    """An error reply decided by the transport: ``{"code": code, "msg": msg}`` with ``http_status``."""

    def __init__(self, code: int, msg: str, http_status: int = 400) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg
        self.http_status = http_status


def _api_error_types() -> tuple[type[Exception], ...]:
    try:
        from paper_exchange.engine.errors import ApiError
    except ImportError:  # the engine is not installed beside this transport (transport tests)
        return (BinanceError,)
    return (BinanceError, ApiError)


API_ERROR_TYPES: tuple[type[Exception], ...] = _api_error_types()


def error_fields(exc: BaseException) -> tuple[int, str, int]:
    """``(code, msg, http_status)`` of an API error of either family."""
    code = getattr(exc, "code", -1000)
    msg = getattr(exc, "msg", str(exc))
    status = getattr(exc, "http_status", 400)
    return int(code), str(msg), int(status)


@runtime_checkable
class ExchangeService(Protocol):
    """What the transport needs from the exchange core (``paper_exchange.service``)."""

    # Public endpoints: ``method(params)``.
    def ping(self, params: Params) -> Any: ...
    def time(self, params: Params) -> Any: ...
    def exchange_info(self, params: Params) -> Any: ...
    def klines(self, params: Params) -> Any: ...
    def ticker_price(self, params: Params) -> Any: ...
    def ticker_24hr(self, params: Params) -> Any: ...
    def premium_index(self, params: Params) -> Any: ...

    # Signed endpoints: ``method(account, params)``; the account is the API key.
    def new_order(self, account: str, params: Params) -> Any: ...
    def query_order(self, account: str, params: Params) -> Any: ...
    def cancel_order(self, account: str, params: Params) -> Any: ...
    def open_orders(self, account: str, params: Params) -> Any: ...
    def cancel_all_open_orders(self, account: str, params: Params) -> Any: ...
    def new_algo_order(self, account: str, params: Params) -> Any: ...
    def query_algo_order(self, account: str, params: Params) -> Any: ...
    def cancel_algo_order(self, account: str, params: Params) -> Any: ...
    def open_algo_orders(self, account: str, params: Params) -> Any: ...
    def user_trades(self, account: str, params: Params) -> Any: ...
    def balance(self, account: str, params: Params) -> Any: ...
    def account_v2(self, account: str, params: Params) -> Any: ...
    def account_v3(self, account: str, params: Params) -> Any: ...
    def position_risk_v2(self, account: str, params: Params) -> Any: ...
    def position_risk_v3(self, account: str, params: Params) -> Any: ...
    def set_leverage(self, account: str, params: Params) -> Any: ...
    def set_margin_type(self, account: str, params: Params) -> Any: ...
    def set_dual_side(self, account: str, params: Params) -> Any: ...
    def get_dual_side(self, account: str, params: Params) -> Any: ...

    # Life cycle.
    def advance(self) -> Any:
        """Drive the replay clock to now: fills, triggers, funding; events go to subscribers.

        Returns ``None`` (an awaitable result is awaited).
        """

    def subscribe(self, callback: EventCallback) -> None:
        """Register ``callback(account, event)`` for user-data events."""

    def close(self) -> None:
        """Flush and release the store; called once at shutdown."""


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


try:
    import orjson

    def json_dumps(value: Any) -> bytes:
        """Compact JSON bytes (orjson when installed); ``Decimal`` becomes a string."""
        return orjson.dumps(value, default=_json_default)

except ImportError:  # orjson is optional: the standard library does the same, slower
    import json

    def json_dumps(value: Any) -> bytes:
        """Compact JSON bytes (orjson when installed); ``Decimal`` becomes a string."""
        return json.dumps(value, separators=(",", ":"), default=_json_default).encode()
