"""The protocol-level facade of the paper exchange: one method per Binance endpoint.

The HTTP layer calls these with the request parameters exactly as strings and, for signed
endpoints, the account (API key).  They return JSON-ready objects or raise
:class:`~paper_exchange.engine.errors.ApiError`.  Every call first drives the engine to the
replay clock (:meth:`PaperExchangeService.advance`); every mutation is committed to SQLite
before the method returns, and user-data events reach subscribers only after that commit.

Times: ``time()``/``serverTime`` and all event and order times are replay time (the candle
clock); the transport checks request ``timestamp``s against wall time.  The service is not
thread-safe: call it from one thread (the event loop).
"""

from __future__ import annotations

import logging
import os
import time as _time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from paper_exchange import views
from paper_exchange.engine import Engine, EngineConfig, Position, max_notional, notional_brackets
from paper_exchange.engine import params as p
from paper_exchange.engine.errors import (
    MSG_ALGO_ONLY,
    MSG_INVALID_TYPE,
    MSG_NO_ORDER,
    MSG_UNKNOWN_ORDER,
    ApiError,
    invalid_data,
    not_required,
)
from paper_exchange.engine.models import ALGO_TYPES, FUNDING_INTERVAL_MS, ORDER_TYPES
from paper_exchange.engine.state import MarkedPosition, Subscriber
from paper_exchange.feed import DAY_MS, DEFAULT_FUNDING_RATE, ReplayClock, ReplayFeed
from paper_exchange.store import ExchangeStore
from xylen.data import CandleStore
from xylen.paths import Home

logger = logging.getLogger(__name__)

T = TypeVar("T")
DEFAULT_HISTORY_DAYS = 30


@dataclass(frozen=True)
class ServiceConfig:
    """How to build a paper exchange (units in names; amounts as Decimal)."""

    db_path: Path
    candles_root: Path | None = None
    symbols: tuple[str, ...] = ("BTCUSDT",)
    interval: str = "5m"
    market: str = "um"
    start_ms: int | None = None
    speed: float | None = None
    balance: Decimal = Decimal(10_000)
    taker_fee: Decimal = Decimal("0.0005")
    maker_fee: Decimal = Decimal("0.0002")
    slippage_bps: Decimal = Decimal(1)
    participation: Decimal = Decimal("0.1")
    default_leverage: int = 20
    maint_margin_rate: Decimal = Decimal("0.004")
    funding_dir: Path | None = None
    default_funding_rate: Decimal = DEFAULT_FUNDING_RATE
    synchronous: str = "NORMAL"

    @classmethod
    def from_home(cls, home: str | os.PathLike[str] | Home | None = None, **overrides: Any) -> ServiceConfig:
        """Defaults for a home folder: every um series of ``interval`` in its candle store,
        the exchange database ``<home>/paper_exchange.db``, funding files from ``<home>/funding``.
        """
        resolved = home if isinstance(home, Home) else Home.resolve(home)
        interval = overrides.get("interval", "5m")
        market = overrides.get("market", "um")
        if "symbols" not in overrides:
            found = tuple(
                s.symbol
                for s in CandleStore(resolved.candles).list()
                if s.market == market and s.interval == interval
            )
            overrides["symbols"] = found
        funding = resolved.root / "funding"
        base = cls(
            db_path=resolved.root / "paper_exchange.db",
            candles_root=resolved.candles,
            funding_dir=funding if funding.is_dir() else None,
        )
        return replace(base, **overrides)

    def engine_config(self) -> EngineConfig:
        return EngineConfig(
            balance=self.balance,
            taker_fee=self.taker_fee,
            maker_fee=self.maker_fee,
            slippage_bps=self.slippage_bps,
            participation=self.participation,
            default_leverage=self.default_leverage,
            maint_margin_rate=self.maint_margin_rate,
        )


def default_start(feed: ReplayFeed, days: int = DEFAULT_HISTORY_DAYS) -> int:
    """``days`` before the end of the data (on a candle boundary), but not before its start."""
    start = feed.end_ms() - days * DAY_MS
    start -= start % feed.step
    return max(start, max(feed.first_open(s) for s in feed.symbols))


class PaperExchangeService:
    """Binance USDⓈ-M endpoints over the engine, the replay clock and the SQLite store."""

    def __init__(
        self, config: ServiceConfig, feed: ReplayFeed | None = None, wall: Callable[[], float] = _time.time
    ) -> None:
        if feed is None:
            if config.candles_root is None:
                raise ValueError("ServiceConfig.candles_root or a feed is required")
            if not config.symbols:
                raise ValueError(f"no {config.market} {config.interval} candles in {config.candles_root}")
            feed = ReplayFeed.from_store(
                CandleStore(config.candles_root),
                config.symbols,
                config.interval,
                config.market,
                config.funding_dir,
                config.default_funding_rate,
            )
        self.config = config
        self.feed = feed
        start = config.start_ms if config.start_ms is not None else default_start(feed)
        self.engine = Engine(feed, config.engine_config(), start)
        self.store = ExchangeStore(config.db_path, config.synchronous)
        snapshot = self.store.load()
        self.engine.restore(snapshot)
        self.engine.on_commit = self.store.save
        self.clock = ReplayClock(self.engine.now, config.speed, wall, end_ms=feed.end_ms())
        logger.info(
            "paper exchange: %d symbol(s), replay at %d (%s), db %s",
            len(feed.symbols),
            self.engine.now,
            "stepped" if config.speed is None else f"x{config.speed}",
            config.db_path,
        )

    # -- clock, events, lifecycle -------------------------------------------------------------------
    def now_ms(self) -> int:
        return self.clock.now_ms()

    def advance(self) -> None:
        """Drive the engine to the replay clock and commit."""
        self.engine.advance(self.clock.now_ms())

    def step_to(self, ts_ms: int) -> None:
        """Move the replay clock to ``ts_ms`` and process everything up to it."""
        self.clock.step_to(ts_ms)
        self.advance()

    def subscribe(self, callback: Subscriber) -> None:
        self.engine.subscribe(callback)

    def close(self) -> None:
        self.engine.finish()
        self.store.close()

    def _run(self, op: Callable[[], T]) -> T:
        engine = self.engine
        try:
            engine.advance(self.clock.now_ms(), commit=False)
            result = op()
        except ApiError:
            engine.finish()
            raise
        except Exception:
            logger.exception("engine failure; reloading the state from %s", self.config.db_path)
            engine.discard()
            engine.restore(self.store.load())
            raise
        engine.finish()
        return result

    # -- public endpoints ---------------------------------------------------------------------------
    def ping(self, params: p.Params) -> dict[str, Any]:
        return {}

    def time(self, params: p.Params) -> dict[str, Any]:
        return {"serverTime": self.now_ms()}

    def exchange_info(self, params: p.Params) -> dict[str, Any]:
        return views.exchange_info(self.engine.specs.values(), self.now_ms())

    def _symbols(self, params: p.Params) -> list[str]:
        symbol = p.text(params, "symbol")
        if symbol is None:
            return list(self.engine.specs)
        self.engine.spec(symbol)
        return [symbol]

    def klines(self, params: p.Params) -> list[list[Any]]:
        symbol = p.required(params, "symbol")
        spec = self.engine.spec(symbol)
        interval = p.required(params, "interval")
        start = p.integer(params, "startTime")
        end = p.integer(params, "endTime")
        count = p.limit(params, 500, 1500)
        now = self._run(lambda: self.engine.now)
        rows = self.feed.klines(symbol, interval, now, start, end, count)
        return [views.kline_row(r, spec) for r in rows]

    def ticker_price(self, params: p.Params) -> dict[str, Any] | list[dict[str, Any]]:
        symbols = self._symbols(params)
        now = self._run(lambda: self.engine.now)
        out = [
            {"symbol": s, "price": self.engine.specs[s].fmt_price(self.engine.mark(s)), "time": now}
            for s in symbols
            if self.feed.price_at(s, now) is not None
        ]
        return out[0] if p.text(params, "symbol") is not None and out else out

    def ticker_24hr(self, params: p.Params) -> dict[str, Any] | list[dict[str, Any]]:
        symbols = self._symbols(params)
        now = self._run(lambda: self.engine.now)
        out = []
        for s in symbols:
            stats = self.feed.ticker_24h(s, now)
            if stats is None:
                continue
            spec = self.engine.specs[s]
            fp = spec.fmt_price
            last = spec.round_price(stats["last"])
            opened = spec.round_price(stats["open"])
            change = last - opened
            volume = float(stats["volume"])
            out.append(
                {
                    "symbol": s,
                    "priceChange": fp(change),
                    "priceChangePercent": f"{change / opened * 100:.3f}" if opened else "0.000",
                    "weightedAvgPrice": fp(spec.round_price(stats["quote_volume"] / volume))
                    if volume
                    else fp(last),
                    "lastPrice": fp(last),
                    "lastQty": spec.fmt_qty(spec.min_qty),
                    "openPrice": fp(opened),
                    "highPrice": fp(spec.round_price(stats["high"])),
                    "lowPrice": fp(spec.round_price(stats["low"])),
                    "volume": f"{volume:.{spec.quantity_precision}f}",
                    "quoteVolume": f"{float(stats['quote_volume']):.2f}",
                    "openTime": int(stats["open_time"]),
                    "closeTime": int(stats["close_time"]),
                    "firstId": 0,
                    "lastId": int(stats["count"]),
                    "count": int(stats["count"]),
                }
            )
        return out[0] if p.text(params, "symbol") is not None and out else out

    def book_ticker(self, params: p.Params) -> dict[str, Any] | list[dict[str, Any]]:
        """Best bid and ask as the engine honours them (:meth:`Engine.quote`: the taker prices)."""
        symbols = self._symbols(params)
        now = self._run(lambda: self.engine.now)
        out = []
        for s in symbols:
            if self.feed.price_at(s, now) is None:
                continue
            bid, ask, size = self.engine.quote(s)
            out.append(views.book_ticker_json(s, self.engine.specs[s], bid, ask, size, now))
        return out[0] if p.text(params, "symbol") is not None and out else out

    def premium_index(self, params: p.Params) -> dict[str, Any] | list[dict[str, Any]]:
        symbols = self._symbols(params)
        now = self._run(lambda: self.engine.now)
        nxt = (now // FUNDING_INTERVAL_MS + 1) * FUNDING_INTERVAL_MS
        out = []
        for s in symbols:
            if self.feed.price_at(s, now) is None:
                continue
            mark = f"{self.engine.mark(s):.8f}"
            out.append(
                {
                    "symbol": s,
                    "markPrice": mark,
                    "indexPrice": mark,
                    "estimatedSettlePrice": mark,
                    "lastFundingRate": f"{self.feed.last_funding_rate(s, now):.8f}",
                    "interestRate": "0.00010000",
                    "nextFundingTime": nxt,
                    "time": now,
                }
            )
        return out[0] if p.text(params, "symbol") is not None and out else out

    # -- orders -------------------------------------------------------------------------------------
    def new_order(self, account: str, params: p.Params) -> dict[str, Any]:
        symbol = p.required(params, "symbol")
        side = p.side(params)
        order_type = p.required(params, "type")
        if order_type in ALGO_TYPES:
            raise ApiError(-4120, MSG_ALGO_ONLY)
        if order_type not in ORDER_TYPES:
            raise ApiError(-1116, MSG_INVALID_TYPE)
        limit = order_type == "LIMIT"
        tif = p.time_in_force(params, need=limit)
        quantity = p.decimal(params, "quantity", need=True)
        if quantity is None:
            raise RuntimeError("quantity: required but came back empty")
        price = p.decimal(params, "price", need=limit)
        if not limit and price is not None:
            raise not_required("price")
        position_side = p.position_side(params)
        reduce_only = p.boolean(params, "reduceOnly")
        client_id = p.text(params, "newClientOrderId")
        resp_type = p.text(params, "newOrderRespType") or "ACK"
        if resp_type not in ("ACK", "RESULT"):
            raise invalid_data("newOrderRespType")
        spec = self.engine.spec(symbol)

        def op() -> dict[str, Any]:
            order = self.engine.place_order(
                account, symbol, side, order_type, quantity, price, tif, position_side, reduce_only, client_id
            )
            return views.order_json(order, spec, "result" if resp_type == "RESULT" else "ack")

        return self._run(op)

    def _order_ref(self, params: p.Params) -> tuple[str, int | None, str | None]:
        symbol = p.required(params, "symbol")
        order_id = p.integer(params, "orderId")
        client_id = p.text(params, "origClientOrderId")
        if order_id is None and client_id is None:
            raise ApiError(
                -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!"
            )
        return symbol, order_id, client_id

    def query_order(self, account: str, params: p.Params) -> dict[str, Any]:
        symbol, order_id, client_id = self._order_ref(params)

        def op() -> dict[str, Any]:
            order = self.engine.find_order(account, symbol, order_id, client_id, -2013, MSG_NO_ORDER)
            return views.order_json(order, self.engine.specs[symbol], "query")

        return self._run(op)

    def cancel_order(self, account: str, params: p.Params) -> dict[str, Any]:
        symbol, order_id, client_id = self._order_ref(params)

        def op() -> dict[str, Any]:
            order = self.engine.cancel_order(account, symbol, order_id, client_id)
            return views.order_json(order, self.engine.specs[symbol], "result")

        return self._run(op)

    def cancel_order_losing_to_a_fill(self, account: str, params: p.Params) -> dict[str, Any]:
        """``DELETE /fapi/v1/order`` under the fill-after-cancel fault (:mod:`paper_exchange.faults`).

        The open order's remaining quantity is filled at its own price (a reduce-only order no
        more than the position it reduces) as a match would fill it; the reply is the ``CANCELED``
        acknowledgement the client would have got, with the executed quantity from before the
        fill.  Nothing to fill: an ordinary cancel.
        """
        symbol, order_id, client_id = self._order_ref(params)

        def op() -> dict[str, Any]:
            engine = self.engine
            order = engine.find_order(account, symbol, order_id, client_id, -2011, MSG_UNKNOWN_ORDER)
            if not order.is_open:
                raise ApiError(-2011, MSG_UNKNOWN_ORDER)
            spec = engine.specs[symbol]
            qty = order.remaining
            if engine.closes_only(order.position_side, order.side, order.reduce_only):
                qty = min(qty, engine.reducible(account, symbol, order.side, order.position_side))
            if qty <= 0 or not order.price:
                engine.end_order(order, "cancel", "CANCELED")
                return views.order_json(order, spec, "result")
            reply = {**views.order_json(order, spec, "result"), "status": "CANCELED"}
            engine.fill(order, qty, order.price, maker=True)
            if order.is_open:  # a reduce-only order that could not fill whole: the rest is cancelled
                engine.end_order(order, "cancel", "CANCELED")
            return reply

        return self._run(op)

    def open_orders(self, account: str, params: p.Params) -> list[dict[str, Any]]:
        symbol = p.text(params, "symbol")
        if symbol is not None:
            self.engine.spec(symbol)

        def op() -> list[dict[str, Any]]:
            orders = self.engine.account_open_orders(account, symbol)
            return [views.order_json(o, self.engine.specs[o.symbol], "query") for o in orders]

        return self._run(op)

    def cancel_all_open_orders(self, account: str, params: p.Params) -> dict[str, Any]:
        symbol = p.required(params, "symbol")
        self._run(lambda: self.engine.cancel_all_orders(account, symbol))
        return {"code": 200, "msg": "The operation of cancel all open order is done."}

    # -- algo orders --------------------------------------------------------------------------------
    def new_algo_order(self, account: str, params: p.Params) -> dict[str, Any]:
        algo_type = p.required(params, "algoType")
        if algo_type != "CONDITIONAL":
            raise invalid_data("algoType")
        symbol = p.required(params, "symbol")
        side = p.side(params)
        order_type = p.required(params, "type")
        if order_type not in ALGO_TYPES:
            raise ApiError(-1116, MSG_INVALID_TYPE)
        tif = p.time_in_force(params, need=False)
        close_position = p.boolean(params, "closePosition")
        reduce_only_sent = p.text(params, "reduceOnly") is not None
        quantity = p.decimal(params, "quantity")
        price = p.decimal(params, "price")
        trigger = p.decimal(params, "triggerPrice")
        activate = p.decimal(params, "activatePrice")
        callback = p.decimal(params, "callbackRate")
        spec = self.engine.spec(symbol)
        if close_position and reduce_only_sent:
            raise not_required("reduceOnly")

        def op() -> dict[str, Any]:
            algo = self.engine.place_algo(
                account,
                symbol,
                side,
                order_type,
                quantity,
                price,
                trigger,
                tif,
                p.position_side(params),
                p.boolean(params, "reduceOnly"),
                close_position,
                p.working_type(params),
                p.text(params, "clientAlgoId"),
                activate,
                callback,
                p.boolean(params, "priceProtect"),
            )
            return views.algo_json(algo, spec)

        return self._run(op)

    def _algo_ref(self, params: p.Params) -> tuple[int | None, str | None]:
        algo_id = p.integer(params, "algoId")
        client_id = p.text(params, "clientAlgoId")
        if algo_id is None and client_id is None:
            raise ApiError(-1102, "Param 'clientAlgoId' or 'algoId' must be sent, but both were empty/null!")
        return algo_id, client_id

    def query_algo_order(self, account: str, params: p.Params) -> dict[str, Any]:
        algo_id, client_id = self._algo_ref(params)

        def op() -> dict[str, Any]:
            algo = self.engine.find_algo(account, algo_id, client_id, -2013)
            return views.algo_json(algo, self.engine.specs[algo.symbol], query=True)

        return self._run(op)

    def cancel_algo_order(self, account: str, params: p.Params) -> dict[str, Any]:
        algo_id, client_id = self._algo_ref(params)
        algo = self._run(lambda: self.engine.cancel_algo(account, algo_id, client_id))
        return {"algoId": algo.algo_id, "clientAlgoId": algo.client_algo_id, "code": "200", "msg": "success"}

    def open_algo_orders(self, account: str, params: p.Params) -> list[dict[str, Any]]:
        symbol = p.text(params, "symbol")
        if symbol is not None:
            self.engine.spec(symbol)

        def op() -> list[dict[str, Any]]:
            algos = self.engine.account_open_algos(account, symbol)
            return [views.algo_json(a, self.engine.specs[a.symbol], query=True) for a in algos]

        return self._run(op)

    # -- account ------------------------------------------------------------------------------------
    def user_trades(self, account: str, params: p.Params) -> list[dict[str, Any]]:
        symbol = p.required(params, "symbol")
        spec = self.engine.spec(symbol)
        order_id = p.integer(params, "orderId")
        start = p.integer(params, "startTime")
        end = p.integer(params, "endTime")
        from_id = p.integer(params, "fromId")
        count = p.limit(params, 500, 1000)
        if start is not None and end is not None and end - start > 7 * DAY_MS:
            raise ApiError(-4166, "Search window is restricted to recent 7 days only.")

        def op() -> list[dict[str, Any]]:
            rows = []
            engine = self.engine
            # one order's fills from their own index, not a scan of the account's every fill
            source = (
                engine.trades.get(account, [])
                if order_id is None
                else engine.order_trades.get((account, order_id), [])
            )
            for t in source:
                if t.symbol != symbol or (order_id is not None and t.order_id != order_id):
                    continue
                if from_id is not None and t.trade_id < from_id:
                    continue
                if (start is not None and t.time < start) or (end is not None and t.time > end):
                    continue
                rows.append(t)
            chosen = rows[:count] if from_id is not None or start is not None else rows[-count:]
            return [views.trade_json(t, spec) for t in chosen]

        return self._run(op)

    def income(self, account: str, params: p.Params) -> list[dict[str, Any]]:
        """Income history, oldest first: without a time range the last 7 days (replay time)."""
        symbol = p.text(params, "symbol")
        if symbol is not None:
            self.engine.spec(symbol)
        income_type = p.text(params, "incomeType")
        start = p.integer(params, "startTime")
        end = p.integer(params, "endTime")
        count = p.limit(params, 100, 1000)

        def op() -> list[dict[str, Any]]:
            lo = start if start is not None or end is not None else self.engine.now - 7 * DAY_MS
            rows = [
                i
                for i in self.engine.incomes.get(account, [])
                if (symbol is None or i.symbol == symbol)
                and (income_type is None or i.income_type == income_type)
                and (lo is None or i.time >= lo)
                and (end is None or i.time <= end)
            ]
            return [views.income_json(i) for i in rows[:count]]

        return self._run(op)

    def _position_views(self, account: str, symbols: Sequence[str], every: bool) -> list[MarkedPosition]:
        engine = self.engine
        dual = engine.account(account).dual_side
        sides = ("LONG", "SHORT") if dual else ("BOTH",)
        out = []
        for symbol in symbols:
            if self.feed.price_at(symbol, engine.now) is None:
                continue
            book = engine.positions.get(account, {})
            listed = every or engine.has_open_orders(account, symbol)
            for ps in sides:
                pos = book.get((symbol, ps))
                if pos is None:
                    pos = Position(account, symbol, ps)
                if listed or pos.amount != 0:
                    out.append(engine.position_view(pos))
        return out

    def balance(self, account: str, params: p.Params) -> list[dict[str, Any]]:
        def op() -> list[dict[str, Any]]:
            acct = self.engine.account(account)
            return views.balance_json(account, self.engine.account_view(account), acct.update_time)

        return self._run(op)

    def account_v2(self, account: str, params: p.Params) -> dict[str, Any]:
        def op() -> dict[str, Any]:
            acct = self.engine.account(account)
            pvs = self._position_views(account, list(self.engine.specs), every=True)
            return views.account_v2(self.engine.account_view(account), pvs, acct.update_time)

        return self._run(op)

    def account_v3(self, account: str, params: p.Params) -> dict[str, Any]:
        def op() -> dict[str, Any]:
            acct = self.engine.account(account)
            pvs = self._position_views(account, list(self.engine.specs), every=False)
            return views.account_v3(self.engine.account_view(account), pvs, acct.update_time)

        return self._run(op)

    def position_risk_v2(self, account: str, params: p.Params) -> list[dict[str, Any]]:
        symbols = self._symbols(params)
        return self._run(
            lambda: [views.position_risk_v2(pv) for pv in self._position_views(account, symbols, every=True)]
        )

    def position_risk_v3(self, account: str, params: p.Params) -> list[dict[str, Any]]:
        symbols = self._symbols(params)
        return self._run(
            lambda: [views.position_risk_v3(pv) for pv in self._position_views(account, symbols, every=False)]
        )

    def set_leverage(self, account: str, params: p.Params) -> dict[str, Any]:
        symbol = p.required(params, "symbol")
        leverage = p.integer(params, "leverage", need=True)
        if leverage is None:
            raise RuntimeError("leverage: required but came back empty")
        setting = self._run(lambda: self.engine.set_leverage(account, symbol, leverage))
        return {
            "leverage": setting.leverage,
            "maxNotionalValue": str(max_notional(leverage)),
            "symbol": symbol,
        }

    def leverage_bracket(self, account: str, params: p.Params) -> dict[str, Any] | list[dict[str, Any]]:
        """``GET /fapi/v1/leverageBracket``: the notional brackets behind ``maxNotionalValue``.

        Every bracket carries the engine's flat maintenance margin rate (so ``cum`` is 0): what
        the engine computes with, which ccxt's ``fetch_positions`` reads to derive margins.
        Numbers, not strings, as Binance sends them; one object when ``symbol`` is sent.
        """
        symbols = self._symbols(params)
        rate = float(self.config.maint_margin_rate)
        brackets = [
            {
                "bracket": i,
                "initialLeverage": leverage,
                "notionalCap": cap,
                "notionalFloor": floor,
                "maintMarginRatio": rate,
                "cum": 0.0,
            }
            for i, (leverage, floor, cap) in enumerate(notional_brackets(), start=1)
        ]
        out = [{"symbol": s, "notionalCoef": 1.0, "brackets": brackets} for s in symbols]
        return out[0] if p.text(params, "symbol") is not None else out

    def set_margin_type(self, account: str, params: p.Params) -> dict[str, Any]:
        symbol = p.required(params, "symbol")
        margin_type = p.required(params, "marginType").upper()
        if margin_type == "CROSS":
            margin_type = "CROSSED"
        if margin_type not in ("ISOLATED", "CROSSED"):
            raise invalid_data("marginType")
        self._run(lambda: self.engine.set_margin_type(account, symbol, margin_type))
        return {"code": 200, "msg": "success"}

    def set_dual_side(self, account: str, params: p.Params) -> dict[str, Any]:
        p.required(params, "dualSidePosition")
        dual = p.boolean(params, "dualSidePosition")
        self._run(lambda: self.engine.set_dual_side(account, dual))
        return {"code": 200, "msg": "success"}

    def get_dual_side(self, account: str, params: p.Params) -> dict[str, Any]:
        return self._run(lambda: {"dualSidePosition": self.engine.account(account).dual_side})
