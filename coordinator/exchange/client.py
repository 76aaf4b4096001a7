"""``BinanceFuturesClient``: the USDⓈ-M REST calls the order manager needs, returning wire schemas.

Built on plain aiohttp, not on python-binance's ``AsyncClient``.  python-binance 1.0.37 does have
the algo-order endpoints (``futures_create_algo_order`` / ``_get_`` / ``_cancel_``), so that was not
the reason; what it lacks, checked in its source (``async_client.py``, ``base_client.py``):

- response headers: it keeps only the LAST response on ``self.response``, overwritten by every
  call, so with concurrent requests ``X-MBX-USED-WEIGHT-1M`` / ``X-MBX-ORDER-COUNT-*`` cannot be
  tied to the request that produced them -- and the limiter must be corrected from them;
- per-request timeouts: one class-level ``REQUEST_TIMEOUT`` float for every call (a placement and
  a position poll want different budgets), passed as a bare float;
- error classification: any non-2xx becomes ``BinanceAPIException`` (``code=None`` for the 503
  "Unknown error" body) and aiohttp / ``asyncio.TimeoutError`` leak through raw, so the decision
  "retryable, rejected or unknown outcome" -- the one that matters for orders -- would still have to
  be rebuilt around it, without knowing whether the request was sent;
- signing and timing: it sorts parameters, always sends ``recvWindow=10000`` (class attribute),
  and ``create()`` calls the SPOT host (``/api/v3/ping`` and ``/api/v3/time``) even for futures;
- weight: it imports ``requests`` and the synchronous ``Client`` (plus pycryptodome, websockets,
  dateparser) for features we do not use, and adds a broker prefix to client order ids it makes.

Retries it does not do at all, which is fine, but everything we need (our retry policy, limiter,
error types, Decimal schemas) sits around the HTTP call, so the HTTP call itself is the small part:
~150 lines of :mod:`transport` on the aiohttp the coordinator already uses.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from decimal import Decimal
from types import TracebackType
from typing import Any, Literal

import aiohttp
from pydantic import SecretStr, TypeAdapter

from coordinator.exchange import constants as c
from coordinator.exchange.auth import Signer
from coordinator.exchange.deadline import ENTRY_DEADLINE, SEND_DEADLINE
from coordinator.exchange.deadline import check as check_deadline
from coordinator.exchange.errors import FatalError, RejectedError
from coordinator.exchange.filters import PriceRounding, SymbolRules, fmt
from coordinator.exchange.priority import Priority
from coordinator.exchange.rate_limit import RateLimiter
from coordinator.exchange.retry import RetryPolicy
from coordinator.exchange.schemas import (
    AlgoCancel,
    AlgoOrder,
    Balance,
    BookTicker,
    ExchangeInfo,
    Income,
    LeverageChange,
    ListenKey,
    Order,
    Position,
    ServerTime,
    UserTrade,
)
from coordinator.exchange.transport import Transport
from xylen.config.schema import ExchangeConfig, ExchangeMode
from xylen.config.secrets import Secrets

logger = logging.getLogger(__name__)

CLIENT_ID_PATTERN = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
CONDITIONAL_TYPES = frozenset(
    {"STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"}
)
_ORDERS = TypeAdapter(list[Order])
_ALGOS = TypeAdapter(list[AlgoOrder])
_TRADES = TypeAdapter(list[UserTrade])
_BALANCES = TypeAdapter(list[Balance])
_POSITIONS = TypeAdapter(list[Position])
_INCOME = TypeAdapter(list[Income])
INCOME_PAGE = 1000  # the most /fapi/v1/income returns per request
GET_POSITION_MODE = c.Endpoint("GET", "/fapi/v1/positionSide/dual", 30, signed=True)
SET_POSITION_MODE = c.Endpoint("POST", "/fapi/v1/positionSide/dual", signed=True)


def credentials(config: ExchangeConfig, secrets: Secrets) -> tuple[SecretStr, SecretStr]:
    """The key pair for the configured mode: paper keys for paper, Binance keys otherwise."""
    if config.mode is ExchangeMode.LIVE and not config.confirm_live:
        raise FatalError("exchange.mode is live but exchange.confirm_live is false")
    if config.mode is ExchangeMode.PAPER:
        return secrets.paper_api_key, secrets.paper_api_secret
    if secrets.binance_api_key is None or secrets.binance_api_secret is None:
        raise FatalError(f"exchange.mode {config.mode.value} needs BINANCE_API_KEY and BINANCE_API_SECRET")
    return secrets.binance_api_key, secrets.binance_api_secret


def _check_client_id(value: str, name: str) -> str:
    if not CLIENT_ID_PATTERN.match(value):
        raise RejectedError(
            f"{name} {value!r} must match {CLIENT_ID_PATTERN.pattern}", code=-1100, local=True
        )
    return value


def _id_params(
    symbol: str | None, client_id: str | None, exchange_id: int | None, client_key: str
) -> dict[str, str]:
    params: dict[str, str] = {} if symbol is None else {"symbol": symbol}
    if exchange_id is not None:
        params["orderId" if client_key == "origClientOrderId" else "algoId"] = str(exchange_id)
    elif client_id is not None:
        params[client_key] = client_id
    else:
        raise ValueError("give a client id or an exchange id")
    return params


class BinanceFuturesClient:
    """Async USDⓈ-M client (see the module docstring); build it with :meth:`create`."""

    def __init__(self, transport: Transport, ws_base_url: str = c.LIVE_WS_URL) -> None:
        self.transport = transport
        self.ws_base_url = ws_base_url
        self.rules: dict[str, SymbolRules] = {}
        self.info: ExchangeInfo | None = None

    @classmethod
    async def create(
        cls,
        config: ExchangeConfig,
        secrets: Secrets,
        *,
        retry: RetryPolicy | None = None,
        limiter: RateLimiter | None = None,
        session: aiohttp.ClientSession | None = None,
        clock: Callable[[], float] = time.time,
    ) -> BinanceFuturesClient:
        """A client for ``config.mode`` with its clock synced and exchangeInfo (filters, limits) loaded."""
        key, secret = credentials(config, secrets)
        transport = Transport(
            c.rest_url(config),
            Signer(key, secret),
            limiter=limiter,
            retry=retry,
            recv_window_ms=config.recv_window_ms,
            timeout_s=config.request_timeout_seconds,
            session=session,
            clock=clock,
        )
        client = cls(transport, c.ws_url(config))
        try:
            await transport.sync_time()
            info = await client.exchange_info()
            if limiter is None:
                transport.limiter.reseed(info.rateLimits)
        except BaseException:
            await transport.close()
            raise
        logger.info(
            "exchange client ready: %s mode, %s, %d symbols",
            config.mode.value,
            c.rest_url(config),
            len(info.symbols),
        )
        return client

    async def close(self) -> None:
        await self.transport.close()

    async def __aenter__(self) -> BinanceFuturesClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- market data ---------------------------------------------------------------------------
    async def server_time(self) -> int:
        """The exchange's clock in ms."""
        return ServerTime.model_validate(await self.transport.request(c.TIME)).serverTime

    async def exchange_info(self) -> ExchangeInfo:
        """exchangeInfo; also refreshes :attr:`rules` (the filters every order is checked against)."""
        info = ExchangeInfo.model_validate(await self.transport.request(c.EXCHANGE_INFO))
        self.info = info
        self.rules = {s.symbol: SymbolRules.from_symbol_info(s) for s in info.symbols}
        return info

    async def book_ticker(self, symbol: str) -> BookTicker:
        """The best bid and ask of ``symbol`` (``/fapi/v1/ticker/bookTicker``, weight 2)."""
        return BookTicker.model_validate(await self.transport.request(c.BOOK_TICKER, {"symbol": symbol}))

    def symbol_rules(self, symbol: str) -> SymbolRules:
        """The filters of ``symbol`` (a local -1121 rejection when the exchange does not list it)."""
        rules = self.rules.get(symbol)
        if rules is None:
            raise RejectedError(f"Invalid symbol {symbol!r}.", code=-1121, local=True)
        return rules

    # -- orders --------------------------------------------------------------------------------
    async def new_order(
        self,
        symbol: str,
        side: Literal["BUY", "SELL"],
        type: Literal["LIMIT", "MARKET"],
        quantity: Decimal,
        price: Decimal | None = None,
        time_in_force: str | None = None,
        reduce_only: bool = False,
        *,
        client_order_id: str,
        post_only: bool = False,
        position_side: str | None = None,
        reference_price: Decimal | None = None,
        price_rounding: PriceRounding = "nearest",
        check_filters: bool = True,
        timeout_s: float | None = None,
    ) -> Order:
        """Place a LIMIT or MARKET order (``newOrderRespType=RESULT``).

        Quantity and price are rounded and checked by :class:`SymbolRules` first (local
        :class:`RejectedError` without a request); ``check_filters=False`` sends them as given.
        ``post_only`` makes a LIMIT order GTX.  Conditional types belong to :meth:`new_algo_order`.
        An opening order (not ``reduce_only``) sent inside
        :func:`~coordinator.exchange.deadline.entry_deadline` is not sent, waited for nor retried
        past that deadline (:class:`~coordinator.exchange.deadline.DeadlineExceeded`).
        """
        if type in CONDITIONAL_TYPES:
            raise RejectedError(
                f"{type} goes through new_algo_order (algoOrder endpoint)", code=-4120, local=True
            )
        _check_client_id(client_order_id, "client_order_id")
        if check_filters:
            quantity, price = self.symbol_rules(symbol).prepare_order(
                side, type, quantity, price,
                reduce_only=reduce_only, reference_price=reference_price, price_rounding=price_rounding,
            )  # fmt: skip
        params = {"symbol": symbol, "side": side, "type": type, "quantity": fmt(quantity)}
        if type == "LIMIT":
            if price is None:
                raise RejectedError("a LIMIT order needs a price", code=-1102, local=True)
            params["price"] = fmt(price)
            params["timeInForce"] = "GTX" if post_only else (time_in_force or "GTC")
        elif time_in_force is not None:
            params["timeInForce"] = time_in_force
        if reduce_only:
            params["reduceOnly"] = "true"
        if position_side is not None:
            params["positionSide"] = position_side
        params["newClientOrderId"] = client_order_id
        params["newOrderRespType"] = "RESULT"
        deadline = None if reduce_only else ENTRY_DEADLINE.get()  # closing is never too late
        check_deadline(deadline, 0.0, f"order {client_order_id}")
        token = SEND_DEADLINE.set(deadline)
        priority = Priority.CLOSE if reduce_only else Priority.ENTRY  # closing goes before opening
        try:
            reply = await self.transport.request(c.NEW_ORDER, params, timeout_s=timeout_s, priority=priority)
        finally:
            SEND_DEADLINE.reset(token)
        return Order.model_validate(reply)

    async def new_algo_order(
        self,
        symbol: str,
        side: Literal["BUY", "SELL"],
        type: str,
        trigger_price: Decimal,
        close_position: bool = True,
        *,
        client_algo_id: str,
        working_type: Literal["MARK_PRICE", "CONTRACT_PRICE"] = "MARK_PRICE",
        quantity: Decimal | None = None,
        reduce_only: bool = False,
        price: Decimal | None = None,
        price_rounding: PriceRounding = "nearest",
        timeout_s: float | None = None,
    ) -> AlgoOrder:
        """Place a conditional order (STOP_MARKET / TAKE_PROFIT_MARKET / ...) on ``/fapi/v1/algoOrder``.

        ``close_position=True`` closes the whole position when triggered (no quantity, no reduceOnly).
        A conditional order protects a position: it goes first through the rate limiter
        (:class:`~coordinator.exchange.priority.Priority` ``PROTECT``, as do algo cancels).
        """
        if type not in CONDITIONAL_TYPES:
            raise RejectedError(f"{type} is not a conditional order type", code=-1116, local=True)
        _check_client_id(client_algo_id, "client_algo_id")
        rules = self.symbol_rules(symbol)
        trigger = rules.round_trigger(trigger_price, price_rounding)
        rules.check_price(trigger)
        params = {
            "algoType": "CONDITIONAL",
            "symbol": symbol,
            "side": side,
            "type": type,
            "triggerPrice": fmt(trigger),
            "workingType": working_type,
        }
        if close_position:
            params["closePosition"] = "true"
        else:
            if quantity is None:
                raise RejectedError(
                    "a conditional order without closePosition needs a quantity", code=-1102, local=True
                )
            qty = rules.round_quantity(quantity, market=price is None)
            rules.check_quantity(qty, market=price is None)
            params["quantity"] = fmt(qty)
            if reduce_only:
                params["reduceOnly"] = "true"
        if price is not None:
            params["price"] = fmt(rules.round_price(price, price_rounding))
            params["timeInForce"] = "GTC"
        params["clientAlgoId"] = client_algo_id
        return AlgoOrder.model_validate(
            await self.transport.request(c.NEW_ALGO_ORDER, params, timeout_s=timeout_s)
        )

    async def get_order(
        self, symbol: str, client_order_id: str | None = None, order_id: int | None = None
    ) -> Order:
        """One order by ``orderId`` or ``origClientOrderId`` (:class:`NotFoundError`: -2013)."""
        params = _id_params(symbol, client_order_id, order_id, "origClientOrderId")
        return Order.model_validate(await self.transport.request(c.GET_ORDER, params))

    async def cancel_order(
        self, symbol: str, client_order_id: str | None = None, order_id: int | None = None
    ) -> Order:
        """Cancel one order; the reply shows it CANCELED (:class:`NotFoundError`: -2011)."""
        params = _id_params(symbol, client_order_id, order_id, "origClientOrderId")
        return Order.model_validate(await self.transport.request(c.CANCEL_ORDER, params))

    async def get_algo_order(
        self, client_algo_id: str | None = None, algo_id: int | None = None
    ) -> AlgoOrder:
        """One algo order by ``algoId`` or ``clientAlgoId``."""
        params = _id_params(None, client_algo_id, algo_id, "clientAlgoId")
        return AlgoOrder.model_validate(await self.transport.request(c.GET_ALGO_ORDER, params))

    async def cancel_algo_order(
        self, client_algo_id: str | None = None, algo_id: int | None = None
    ) -> AlgoCancel:
        """Cancel one algo order."""
        params = _id_params(None, client_algo_id, algo_id, "clientAlgoId")
        return AlgoCancel.model_validate(await self.transport.request(c.CANCEL_ALGO_ORDER, params))

    async def get_open_orders(self, symbol: str | None = None) -> list[Order]:
        """Open orders, of one symbol or all (weight 1 / 40)."""
        params = {} if symbol is None else {"symbol": symbol}
        return _ORDERS.validate_python(await self.transport.request(c.OPEN_ORDERS, params))

    async def get_open_algo_orders(self, symbol: str | None = None) -> list[AlgoOrder]:
        """Open algo orders, of one symbol or all."""
        params = {} if symbol is None else {"symbol": symbol}
        return _ALGOS.validate_python(await self.transport.request(c.OPEN_ALGO_ORDERS, params))

    async def get_user_trades(
        self,
        symbol: str,
        *,
        order_id: int | None = None,
        start_time_ms: int | None = None,
        end_time_ms: int | None = None,
        from_id: int | None = None,
        limit: int | None = None,
    ) -> list[UserTrade]:
        """The account's fills in ``symbol`` (start/end at most 7 days apart)."""
        params = {"symbol": symbol}
        for name, value in (
            ("orderId", order_id),
            ("startTime", start_time_ms),
            ("endTime", end_time_ms),
            ("fromId", from_id),
            ("limit", limit),
        ):
            if value is not None:
                params[name] = str(value)
        return _TRADES.validate_python(await self.transport.request(c.USER_TRADES, params))

    # -- account -------------------------------------------------------------------------------
    async def get_income(
        self,
        symbol: str | None = None,
        income_type: str | None = None,
        *,
        start_time_ms: int | None = None,
        end_time_ms: int | None = None,
        limit: int = INCOME_PAGE,
    ) -> list[Income]:
        """Income history, oldest first (``/fapi/v1/income``, weight 30; at most ``limit`` <= 1000).

        Without a time range the exchange answers for the last 7 days.  When a range holds more
        than ``limit`` entries the exchange returns the first ``limit`` from ``startTime``: page
        with :meth:`income_between`.
        """
        params: dict[str, str] = {"limit": str(min(max(limit, 1), INCOME_PAGE))}
        for name, value in (
            ("symbol", symbol),
            ("incomeType", income_type),
            ("startTime", start_time_ms),
            ("endTime", end_time_ms),
        ):
            if value is not None:
                params[name] = str(value)
        return _INCOME.validate_python(await self.transport.request(c.INCOME, params))

    async def income_between(
        self, symbol: str, income_type: str, start_time_ms: int, end_time_ms: int, *, max_pages: int = 10
    ) -> list[Income]:
        """Every ``income_type`` entry of ``symbol`` in ``[start, end]`` (inclusive), paging by time."""
        out: list[Income] = []
        seen: set[int] = set()
        start = start_time_ms
        for _ in range(max_pages):
            page = await self.get_income(
                symbol, income_type, start_time_ms=start, end_time_ms=end_time_ms, limit=INCOME_PAGE
            )
            fresh = [i for i in page if i.tranId not in seen]
            seen.update(i.tranId for i in fresh)
            out.extend(fresh)
            if len(page) < INCOME_PAGE or not fresh:
                return out
            start = max(i.time for i in page)
        logger.warning("income of %s %s: more than %d pages, truncated", symbol, income_type, max_pages)
        return out

    async def get_account_balance(self) -> list[Balance]:
        """Balances per asset (``/fapi/v3/balance``)."""
        return _BALANCES.validate_python(await self.transport.request(c.BALANCE))

    async def get_open_positions(self, symbol: str | None = None) -> list[Position]:
        """Positions with a non-zero amount (``/fapi/v3/positionRisk``)."""
        params = {} if symbol is None else {"symbol": symbol}
        positions = _POSITIONS.validate_python(await self.transport.request(c.POSITION_RISK, params))
        return [p for p in positions if p.positionAmt != 0]

    async def set_leverage(self, symbol: str, leverage: int) -> LeverageChange:
        """Set the initial leverage of ``symbol`` (1..125)."""
        params = {"symbol": symbol, "leverage": str(leverage)}
        return LeverageChange.model_validate(await self.transport.request(c.LEVERAGE, params))

    async def get_position_mode(self) -> bool:
        """True in hedge mode (``dualSidePosition``), False in one-way mode (weight 30)."""
        reply = await self.transport.request(GET_POSITION_MODE)
        return bool(reply["dualSidePosition"])

    async def set_position_mode(self, dual: bool) -> None:
        """Switch hedge (True) / one-way (False); refused with -4068 while a position is open,
        -4067 while orders are open, -4059 when it already is."""
        await self.transport.request(SET_POSITION_MODE, {"dualSidePosition": "true" if dual else "false"})

    async def set_margin_mode(self, symbol: str, mode: Literal["isolated", "cross"]) -> bool:
        """Set ISOLATED / CROSSED margin; True if it changed, False if it already was (-4046)."""
        params = {"symbol": symbol, "marginType": "ISOLATED" if mode == "isolated" else "CROSSED"}
        try:
            await self.transport.request(c.MARGIN_TYPE, params)
        except RejectedError as exc:
            if exc.code in c.SUCCESS_CODES:
                return False
            raise
        return True

    # -- user-data stream keys -----------------------------------------------------------------
    async def create_listen_key(self) -> str:
        """A listen key (a repeat call returns the live one and extends it)."""
        return ListenKey.model_validate(await self.transport.request(c.LISTEN_KEY_CREATE)).listenKey

    async def keepalive_listen_key(self, listen_key: str) -> None:
        """Extend ``listen_key`` by 60 min (:class:`NotFoundError` -1125 if it expired)."""
        await self.transport.request(c.LISTEN_KEY_KEEPALIVE, {"listenKey": listen_key})

    async def close_listen_key(self, listen_key: str) -> None:
        """Delete ``listen_key``; its streams are closed by the exchange."""
        await self.transport.request(c.LISTEN_KEY_CLOSE, {"listenKey": listen_key})

    def user_stream_url(self, listen_key: str) -> str:
        """The user-data WebSocket URL for ``listen_key``."""
        return f"{self.ws_base_url}{c.USER_STREAM_PATH}?listenKey={listen_key}"

    async def raw_request(self, endpoint: c.Endpoint, params: dict[str, str] | None = None) -> Any:
        """Send ``endpoint`` as given, bypassing the filters (tests, diagnostics)."""
        return await self.transport.request(endpoint, params)
