"""``FuturesExchange``: the exchange as the rest of the coordinator sees it, in one place.

Paper, testnet or live comes from ``ExchangeConfig.mode`` (the base URLs and keys follow it).
Underneath: :class:`BinanceFuturesClient` (REST), :class:`UserStream` (user data, listen-key
keep-alive), :class:`OrderStore` (SQLite), :class:`OrderManager` (placing, querying, cancelling),
:class:`Monitor` (stream, REST polling every ``poll_interval_seconds``, bracket sweep) and
:class:`Reconciler` (run by :meth:`FuturesExchange.start` before anything is placed).

Usage::

    async with await FuturesExchange.create(config, secrets, home / "xylen.db") as exchange:
        placement = await exchange.place_order("BTCUSDT", Side.BUY, Decimal("0.01"),
                                               stop_loss=Decimal("41000"), take_profit=Decimal("43000"))

Amounts are ``Decimal``; quantities and prices are rounded by the symbol's
:class:`~coordinator.exchange.filters.SymbolRules` (the one rounding place) and the minimum
notional is checked against the mark price before anything is sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Literal

from coordinator.exchange.client import BinanceFuturesClient
from coordinator.exchange.constants import Endpoint
from coordinator.exchange.errors import RejectedError, RetryableError, UnknownOutcomeError
from coordinator.exchange.retry import RetryPolicy
from coordinator.exchange.schemas import Balance, BookTicker, LeverageChange, Position
from coordinator.exchange.user_stream import UserStream
from coordinator.orders.manager import OrderManager, Placement
from coordinator.orders.models import Intent, Order, OrderKind
from coordinator.orders.monitor import Monitor, net_positions
from coordinator.orders.reconcile import Reconciler, ReconciliationResult
from coordinator.orders.states import OrderState
from coordinator.orders.store import OrderStore
from coordinator.side import Side
from xylen.config.schema import ExchangeConfig
from xylen.config.secrets import Secrets
from xylen.errors import XylenError

logger = logging.getLogger(__name__)


class PositionModeError(XylenError):
    """The account is in hedge position mode and cannot be switched to one-way now."""


PREMIUM_INDEX = Endpoint("GET", "/fapi/v1/premiumIndex", 1, 10)
CONNECT_ATTEMPTS = 6
CODE_DUAL_WITH_OPEN_ORDERS = -4067  # the position mode cannot change while orders are open
CONNECT_BASE_DELAY_S = 0.5
CONNECT_MAX_DELAY_S = 8.0


async def connect(
    config: ExchangeConfig,
    secrets: Secrets,
    *,
    retry: RetryPolicy | None = None,
    attempts: int = CONNECT_ATTEMPTS,
    base_delay_s: float = CONNECT_BASE_DELAY_S,
    max_delay_s: float = CONNECT_MAX_DELAY_S,
) -> BinanceFuturesClient:
    """:meth:`BinanceFuturesClient.create` (clock sync, exchangeInfo), repeated with exponential
    backoff while it fails with a transient error (a 5xx, a timeout, no connection): both calls
    are reads, so repeating them is safe, and one bad reply must not stop a start.  The clock sync
    is a single request inside the client, so this is where its failures are retried."""
    delay = base_delay_s
    for attempt in range(1, attempts + 1):
        try:
            return await BinanceFuturesClient.create(config, secrets, retry=retry)
        except (RetryableError, UnknownOutcomeError) as exc:
            if attempt == attempts:
                raise
            logger.warning(
                "connecting to the exchange failed (%s); retrying in %.1f s (attempt %d of %d)",
                exc, delay, attempt + 1, attempts,
            )  # fmt: skip
            await asyncio.sleep(delay)
            delay = min(max_delay_s, delay * 2)
    raise AssertionError("unreachable")  # the loop returns or raises


class FuturesExchange:
    """Orders with brackets, status, cancels, account and settings (module docstring)."""

    def __init__(
        self,
        config: ExchangeConfig,
        client: BinanceFuturesClient,
        store: OrderStore,
        *,
        use_stream: bool = True,
        trigger_grace_s: float = 60.0,
        symbols: Sequence[str] | None = None,
    ) -> None:
        self.config = config
        self.client = client
        self.store = store
        self.manager = OrderManager(client, store, send_timeout_s=config.request_timeout_seconds)
        self.stream = UserStream(client) if use_stream else None
        self.monitor = Monitor(
            self.manager,
            self.stream,
            poll_interval_s=config.poll_interval_seconds,
            trigger_grace_s=trigger_grace_s,
        )
        self.reconciler = Reconciler(
            self.manager,
            trigger_grace_s=trigger_grace_s,
            symbols=symbols,
            requery_interval_s=config.poll_interval_seconds,
        )
        self.monitor.reconcile = self.reconciler.resolve_conflicts  # lasting order conflicts
        self.reconciliation: ReconciliationResult | None = None
        self._stopped: bool | None = None  # what stop() returned, once it has run

    @classmethod
    async def create(
        cls,
        config: ExchangeConfig,
        secrets: Secrets,
        db_path: str | Path,
        *,
        use_stream: bool = True,
        retry: RetryPolicy | None = None,
        trigger_grace_s: float = 60.0,
        symbols: Sequence[str] | None = None,
    ) -> FuturesExchange:
        """Connect (clock sync, exchangeInfo; :func:`connect` retries a transient failure) and
        open the order database; :meth:`start` next.

        ``symbols``: the symbols traded (reconciliation lists their open orders one by one, weight 1
        each, instead of every symbol's at weight 40); ``None`` reconciles every symbol.
        """
        client = await connect(config, secrets, retry=retry)
        try:
            store = OrderStore.open(db_path)
        except BaseException:
            await client.close()
            raise
        return cls(
            config, client, store, use_stream=use_stream, trigger_grace_s=trigger_grace_s, symbols=symbols
        )

    async def start(self) -> ReconciliationResult:
        """Open the user stream, reconcile SQLite with the exchange, then start monitoring."""
        if self.stream is not None:
            await self.stream.start()
        self.reconciliation = await self.reconciler.run()
        self.monitor.start()
        return self.reconciliation

    @property
    def shutdown_timeout_s(self) -> float:
        """The bound of :meth:`stop`'s protection step: room for an order in flight to get its
        reply, its outcome to be queried and a missing stop to be placed."""
        return 3 * self.config.request_timeout_seconds + 5.0

    async def stop(self) -> bool:
        """Stop monitoring and the stream, close the client and the database (each bounded).

        First the protection is finished (:meth:`finish_protection`): an order whose request is on
        its way gets its reply before the monitor is cancelled, an outcome left unknown is queried,
        an entry still resting on the book is cancelled (filled while no coordinator watches, it
        would open a position without a stop; a part already filled keeps its bracket), and a
        position found without its stop gets one.  Returns True when every open position is left
        with a live stop; False (after an error log line naming each unprotected position) when not.
        A second call does nothing and returns the first one's answer.
        """
        if self._stopped is not None:  # stopped already: the client and the database are closed
            return self._stopped
        protected = False
        try:
            try:
                protected = await asyncio.wait_for(self.finish_protection(), self.shutdown_timeout_s)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("finishing the protective orders at shutdown failed")
            await self.monitor.stop()
            if self.stream is not None:
                await self.stream.stop()
        finally:
            await self.client.close()
            self.store.close()
            self._stopped = protected
        return protected

    async def finish_protection(self, poll_s: float = 0.05) -> bool:
        """The shutdown step of :meth:`stop` (before the client closes); True when protected."""
        manager = self.manager
        while manager.inflight:  # never cancel a request on its way: wait for its reply
            await asyncio.sleep(poll_s)
        await self.monitor.stop()  # nothing new starts from here on
        for order in self.store.live_orders():
            if order.state in (OrderState.SUBMITTED, OrderState.UNKNOWN):  # its outcome stayed unknown
                order = await manager.query(order)
            if order.kind is OrderKind.ENTRY and not order.is_final:  # resting: nobody will watch it
                try:
                    cancelled = await manager.cancel(order.client_order_id)
                except Exception:
                    logger.exception("shutdown: cancelling resting entry %s failed", order.client_order_id)
                    continue
                logger.info("shutdown: resting entry %s %s", order.client_order_id, cancelled.state.value)
        net = net_positions(await self.client.get_open_positions())
        for intent in self.store.open_intents():
            await manager.ensure_bracket(intent.intent_id, net.get(intent.symbol, Decimal(0)))
        net = net_positions(await self.client.get_open_positions())
        protected = True
        for symbol, amount in sorted(net.items()):
            if amount == 0:
                continue
            stops = [
                o
                for intent in self.store.open_intents()
                if intent.symbol == symbol
                for o in self.store.orders_of_intent(intent.intent_id)
                if o.kind is OrderKind.STOP_LOSS and o.state is OrderState.NEW
            ]
            if not stops:
                protected = False
                logger.error(
                    "shutdown: the %s position %s is left WITHOUT a stop on the exchange; protect it"
                    " by hand or start the coordinator again (reconciliation places one)",
                    symbol, amount,
                )  # fmt: skip
        return protected

    async def __aenter__(self) -> FuturesExchange:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- orders ---------------------------------------------------------------------------------
    async def mark_price(self, symbol: str) -> Decimal:
        """The symbol's mark price (``premiumIndex``)."""
        reply = await self.client.raw_request(PREMIUM_INDEX, {"symbol": symbol})
        return Decimal(str(reply["markPrice"]))

    async def market_time(self, symbol: str) -> int:
        """The time of the market data in ms: ``premiumIndex``'s ``time``.  On Binance it is the
        server's clock; on the paper exchange it is the replay clock, whereas ``/fapi/v1/time``
        stays wall time there (the clock signed requests are checked against)."""
        reply = await self.client.raw_request(PREMIUM_INDEX, {"symbol": symbol})
        return int(reply["time"])

    async def place_order(
        self,
        symbol: str,
        side: Side | Literal["BUY", "SELL"],
        quantity: Decimal,
        stop_loss: Decimal | None,
        take_profit: Decimal | None,
        *,
        order_type: Literal["MARKET", "LIMIT"] = "MARKET",
        price: Decimal | None = None,
        post_only: bool = False,
        before_send: Callable[[Intent, Order], None] | None = None,
    ) -> Placement:
        """An entry with its protective bracket (stop and take-profit placed once it fills).

        Returns the :class:`Placement`; a refusal (local filters, or the exchange) is in
        ``placement.reason`` with the entry ``REJECTED``.  Raises
        :class:`~coordinator.orders.manager.SymbolBusy` while the symbol has an open intent.
        """
        reference = await self.mark_price(symbol)
        return await self.manager.open_position(
            symbol, Side(side), quantity, stop_loss=stop_loss, take_profit=take_profit,
            order_type=order_type, price=price, post_only=post_only, reference_price=reference,
            before_send=before_send,
        )  # fmt: skip

    async def book_ticker(self, symbol: str) -> BookTicker:
        """The best bid and ask of ``symbol``."""
        return await self.client.book_ticker(symbol)

    async def funding_paid(self, symbol: str, start_ms: int, end_ms: int) -> Decimal:
        """Funding paid on ``symbol`` between two times, inclusive (received: negative).

        The sum of the account's ``FUNDING_FEE`` income entries (``/fapi/v1/income``, weight 30 a page),
        whose sign is the wallet's, hence the minus.
        """
        entries = await self.client.income_between(symbol, "FUNDING_FEE", start_ms, end_ms)
        return -sum((e.income for e in entries if e.symbol == symbol), Decimal(0))

    async def get_order_status(self, client_order_id: str, *, refresh: bool = True) -> Order:
        """The order as SQLite knows it, looked up on the exchange first when ``refresh``."""
        order = self.manager.current(client_order_id)
        if refresh and not order.is_final:
            order = await self.manager.query(order)
        return order

    async def cancel_order(self, client_order_id: str) -> Order:
        """Cancel one of our orders; returns it as recorded afterwards."""
        return await self.manager.cancel(client_order_id)

    async def close_position(self, symbol: str) -> Order | None:
        """Close the open intent's position on ``symbol`` at market (reduce-only)."""
        for intent in self.store.open_intents():
            if intent.symbol == symbol:
                return await self.manager.close_position(intent.intent_id)
        return None

    # -- account and settings -------------------------------------------------------------------
    async def get_account_balance(self) -> list[Balance]:
        return await self.client.get_account_balance()

    async def get_open_positions(self) -> list[Position]:
        return await self.client.get_open_positions()

    async def set_leverage(self, symbol: str, leverage: int) -> LeverageChange:
        return await self.client.set_leverage(symbol, leverage)

    async def ensure_one_way_mode(self) -> None:
        """Make sure the account is in one-way position mode, which every order here assumes
        (``positionSide`` BOTH, ``closePosition`` legs, one net position per symbol).

        Hedge mode is switched to one-way when no position is open; with one open it raises
        :class:`PositionModeError`: switching would need closing it, a human's decision.
        """
        if not await self.client.get_position_mode():
            return
        held = [p for p in await self.client.get_open_positions() if p.positionAmt != 0]
        if held:
            names = ", ".join(sorted({f"{p.symbol} {p.positionSide} {p.positionAmt}" for p in held}))
            raise PositionModeError(
                "the account is in hedge position mode with open positions (" + names + "); this "
                "system trades one-way mode only: close them and switch to one-way mode "
                "(Binance: Preferences > Position Mode), then start again"
            )
        try:
            await self.client.set_position_mode(False)
        except RejectedError as exc:
            if exc.code != CODE_DUAL_WITH_OPEN_ORDERS:
                raise
            raise PositionModeError(
                "the account is in hedge position mode with open orders; this system trades one-way "
                "mode only: cancel them and switch to one-way mode (Binance: Preferences > Position "
                "Mode), then start again"
            ) from exc
        logger.warning("the account was in hedge position mode with no position open: switched to one-way")

    async def set_margin_mode(self, symbol: str, mode: Literal["isolated", "cross"]) -> bool:
        """True if it changed, False if it already was."""
        return await self.client.set_margin_mode(symbol, mode)
