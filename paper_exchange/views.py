"""Rendering engine objects as Binance USDⓈ-M REST JSON.

Amounts are strings, ids/times integers, flags booleans, exactly as Binance sends them.
Prices use the symbol's ``pricePrecision``, quantities its ``quantityPrecision``, USDT amounts
8 decimals.  Order replies: RESULT (POST order, has ``cumQty``), query (GET order /
openOrders: adds ``time``, drops ``cumQty``), ACK (state at acceptance: NEW, nothing
executed).  positionRisk v2 lists every symbol with ``marginType`` in lower case; v3 only
symbols with a position or open orders.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from paper_exchange.engine.core import max_notional
from paper_exchange.engine.events import money
from paper_exchange.engine.instruments import SymbolSpec
from paper_exchange.engine.models import ZERO, AlgoOrder, Income, Order, Trade
from paper_exchange.engine.state import AccountView, MarkedPosition

RATE_LIMITS: list[dict[str, Any]] = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400},
    {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
]
ORDER_TYPES = [
    "LIMIT",
    "MARKET",
    "STOP",
    "STOP_MARKET",
    "TAKE_PROFIT",
    "TAKE_PROFIT_MARKET",
    "TRAILING_STOP_MARKET",
]
TIME_IN_FORCE = ["GTC", "IOC", "FOK", "GTX", "GTD"]


def _plain(value: Decimal) -> str:
    return format(value.normalize(), "f")


def symbol_info(spec: SymbolSpec) -> dict[str, Any]:
    """One ``symbols[]`` entry of exchangeInfo."""
    return {
        "symbol": spec.symbol,
        "pair": spec.symbol,
        "contractType": "PERPETUAL",
        "deliveryDate": 4133404800000,
        "onboardDate": spec.onboard_date,
        "status": "TRADING",
        "maintMarginPercent": "2.5000",
        "requiredMarginPercent": "5.0000",
        "baseAsset": spec.base_asset,
        "quoteAsset": spec.quote_asset,
        "marginAsset": "USDT",
        "pricePrecision": spec.price_precision,
        "quantityPrecision": spec.quantity_precision,
        "baseAssetPrecision": 8,
        "quotePrecision": 8,
        "underlyingType": "COIN",
        "underlyingSubType": [],
        "triggerProtect": "0.0500",
        "liquidationFee": "0.012500",
        "marketTakeBound": "0.05",
        "maxMoveOrderLimit": 10000,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": _plain(spec.min_price),
                "maxPrice": _plain(spec.max_price),
                "tickSize": str(spec.tick_size),
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": str(spec.min_qty),
                "maxQty": _plain(spec.max_qty),
                "stepSize": str(spec.step_size),
            },
            {
                "filterType": "MARKET_LOT_SIZE",
                "minQty": str(spec.min_qty),
                "maxQty": _plain(spec.market_max_qty),
                "stepSize": str(spec.step_size),
            },
            {"filterType": "MAX_NUM_ORDERS", "limit": spec.max_num_orders},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": spec.max_num_algo_orders},
            {"filterType": "MIN_NOTIONAL", "notional": _plain(spec.min_notional)},
            {
                "filterType": "PERCENT_PRICE",
                "multiplierUp": str(spec.multiplier_up),
                "multiplierDown": str(spec.multiplier_down),
                "multiplierDecimal": "4",
            },
        ],
        "orderTypes": list(ORDER_TYPES),
        "timeInForce": list(TIME_IN_FORCE),
    }


def exchange_info(specs: Iterable[SymbolSpec], server_time: int) -> dict[str, Any]:
    """The exchangeInfo reply."""
    return {
        "timezone": "UTC",
        "serverTime": server_time,
        "futuresType": "U_MARGINED",
        "rateLimits": [dict(r) for r in RATE_LIMITS],
        "exchangeFilters": [],
        "assets": [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"}],
        "symbols": [symbol_info(s) for s in specs],
    }


def kline_row(row: Sequence[Any], spec: SymbolSpec) -> list[Any]:
    """``[openTime, "o", "h", "l", "c", "vol", closeTime, "quoteVol", trades, "0", "0", "0"]``."""
    ot, o, h, lo, c, v, ct, qv, n = row
    q = spec.quantity_precision

    def price(value: float) -> str:  # the partial candle's path prices land between ticks
        return spec.fmt_price(spec.round_price(value))

    return [
        ot,
        price(o),
        price(h),
        price(lo),
        price(c),
        f"{v:.{q}f}",
        ct,
        f"{qv:.4f}",
        n,
        "0",
        "0",
        "0",
    ]


def order_json(order: Order, spec: SymbolSpec, kind: str = "result") -> dict[str, Any]:
    """An order reply: ``kind`` is ``"result"`` (POST RESULT / cancel), ``"query"`` or ``"ack"``."""
    fp, fq = spec.fmt_price, spec.fmt_qty
    ack = kind == "ack"
    executed = ZERO if ack else order.executed_qty
    cum_quote = ZERO if ack else order.cum_quote
    avg = ZERO if ack else order.avg_price()
    out: dict[str, Any] = {
        "orderId": order.order_id,
        "symbol": order.symbol,
        "status": "NEW" if ack else order.status.value,
        "clientOrderId": order.client_order_id,
        "price": fp(order.price) if order.price else "0",
        "avgPrice": fp(avg) if avg else "0.00",
        "origQty": fq(order.orig_qty),
        "executedQty": fq(executed),
    }
    if kind != "query":
        out["cumQty"] = fq(executed)
    out.update(
        {
            "cumQuote": money(cum_quote),
            "timeInForce": order.time_in_force,
            "type": order.type,
            "reduceOnly": order.reduce_only,
            "closePosition": order.close_position,
            "side": order.side,
            "positionSide": order.position_side,
            "stopPrice": fp(order.stop_price) if order.stop_price else "0",
            "workingType": order.working_type,
            "priceProtect": order.price_protect,
            "origType": order.orig_type,
            "priceMatch": "NONE",
            "selfTradePreventionMode": "EXPIRE_MAKER",
            "goodTillDate": 0,
        }
    )
    if kind == "query":
        out["time"] = order.time
    out["updateTime"] = order.time if ack else order.update_time
    return out


def algo_json(algo: AlgoOrder, spec: SymbolSpec, query: bool = False) -> dict[str, Any]:
    """An algo order reply (``query`` adds the actual-order fields)."""
    fp, fq = spec.fmt_price, spec.fmt_qty
    out: dict[str, Any] = {
        "algoId": algo.algo_id,
        "clientAlgoId": algo.client_algo_id,
        "algoType": "CONDITIONAL",
        "orderType": algo.order_type,
        "symbol": algo.symbol,
        "side": algo.side,
        "positionSide": algo.position_side,
        "timeInForce": algo.time_in_force,
        "quantity": fq(algo.quantity),
        "algoStatus": algo.status.value,
        "triggerPrice": fp(algo.trigger_price),
        "price": fp(algo.price) if algo.price else "0",
        "icebergQuantity": None,
        "selfTradePreventionMode": "EXPIRE_MAKER",
        "workingType": algo.working_type,
        "priceMatch": "NONE",
        "closePosition": algo.close_position,
        "priceProtect": algo.price_protect,
        "reduceOnly": algo.reduce_only,
        "activatePrice": fp(algo.activate_price) if algo.activate_price is not None else "",
        "callbackRate": str(algo.callback_rate) if algo.callback_rate is not None else "",
        "createTime": algo.create_time,
        "updateTime": algo.update_time,
        "triggerTime": algo.trigger_time,
        "goodTillDate": 0,
    }
    if query:
        out["actualOrderId"] = str(algo.actual_order_id) if algo.actual_order_id is not None else ""
        out["actualPrice"] = fp(algo.actual_price)
        out["actualQty"] = fq(algo.actual_qty)
        out["actualType"] = algo.actual_type if algo.actual_order_id is not None else ""
    return out


def trade_json(trade: Trade, spec: SymbolSpec) -> dict[str, Any]:
    """A userTrades item."""
    return {
        "buyer": trade.side == "BUY",
        "commission": money(trade.commission),
        "commissionAsset": "USDT",
        "id": trade.trade_id,
        "maker": trade.maker,
        "orderId": trade.order_id,
        "price": spec.fmt_price(trade.price),
        "qty": spec.fmt_qty(trade.qty),
        "quoteQty": money(trade.quote_qty),
        "realizedPnl": money(trade.realized_pnl),
        "marginAsset": "USDT",
        "side": trade.side,
        "positionSide": trade.position_side,
        "symbol": trade.symbol,
        "time": trade.time,
    }


def income_json(income: Income) -> dict[str, Any]:
    """A ``/fapi/v1/income`` item (``tradeId`` is a string, empty when not from a fill)."""
    return {
        "symbol": income.symbol,
        "incomeType": income.income_type,
        "income": money(income.income),
        "asset": income.asset,
        "info": income.income_type,
        "time": income.time,
        "tranId": income.tran_id,
        "tradeId": str(income.trade_id) if income.trade_id else "",
    }


def book_ticker_json(
    symbol: str, spec: SymbolSpec, bid: Decimal, ask: Decimal, size: Decimal, now: int
) -> dict[str, Any]:
    """A ``/fapi/v1/ticker/bookTicker`` item."""
    return {
        "symbol": symbol,
        "bidPrice": spec.fmt_price(bid),
        "bidQty": spec.fmt_qty(size),
        "askPrice": spec.fmt_price(ask),
        "askQty": spec.fmt_qty(size),
        "time": now,
    }


def balance_json(account: str, view: AccountView, update_time: int) -> list[dict[str, Any]]:
    """The balance reply (v2 and v3)."""
    return [
        {
            "accountAlias": "Sg" + account[:2].upper().ljust(2, "X"),
            "asset": "USDT",
            "balance": money(view.wallet),
            "crossWalletBalance": money(view.cross_wallet),
            "crossUnPnl": money(view.cross_unrealized),
            "availableBalance": money(view.available),
            "maxWithdrawAmount": money(max(ZERO, min(view.available, view.cross_wallet))),
            "marginAvailable": True,
            "updateTime": update_time,
        }
    ]


def _totals(view: AccountView) -> dict[str, Any]:
    withdraw = money(max(ZERO, min(view.available, view.cross_wallet)))
    return {
        "totalInitialMargin": money(view.initial_margin),
        "totalMaintMargin": money(view.maint_margin),
        "totalWalletBalance": money(view.wallet),
        "totalUnrealizedProfit": money(view.unrealized),
        "totalMarginBalance": money(view.margin_balance),
        "totalPositionInitialMargin": money(view.position_initial_margin),
        "totalOpenOrderInitialMargin": money(view.open_order_margin),
        "totalCrossWalletBalance": money(view.cross_wallet),
        "totalCrossUnPnl": money(view.cross_unrealized),
        "availableBalance": money(view.available),
        "maxWithdrawAmount": withdraw,
    }


def _asset(view: AccountView, update_time: int) -> dict[str, Any]:
    withdraw = money(max(ZERO, min(view.available, view.cross_wallet)))
    return {
        "asset": "USDT",
        "walletBalance": money(view.wallet),
        "unrealizedProfit": money(view.unrealized),
        "marginBalance": money(view.margin_balance),
        "maintMargin": money(view.maint_margin),
        "initialMargin": money(view.initial_margin),
        "positionInitialMargin": money(view.position_initial_margin),
        "openOrderInitialMargin": money(view.open_order_margin),
        "crossWalletBalance": money(view.cross_wallet),
        "crossUnPnl": money(view.cross_unrealized),
        "availableBalance": money(view.available),
        "maxWithdrawAmount": withdraw,
        "marginAvailable": True,
        "updateTime": update_time,
    }


def _isolated_margin(pv: MarkedPosition) -> Decimal:
    pos = pv.position
    return pos.isolated_wallet + pv.unrealized if pv.margin_type == "ISOLATED" and pos.amount else ZERO


def account_v3(view: AccountView, positions: Sequence[MarkedPosition], update_time: int) -> dict[str, Any]:
    """GET /fapi/v3/account (positions: only those with an amount or open orders)."""
    out = _totals(view)
    out["assets"] = [_asset(view, update_time)]
    out["positions"] = [
        {
            "symbol": pv.position.symbol,
            "positionSide": pv.position.position_side,
            "positionAmt": pv.spec.fmt_qty(pv.position.amount),
            "unrealizedProfit": money(pv.unrealized),
            "isolatedMargin": money(_isolated_margin(pv)),
            "notional": money(pv.notional),
            "isolatedWallet": money(pv.position.isolated_wallet),
            "initialMargin": money(pv.initial_margin + pv.open_order_margin),
            "maintMargin": money(pv.maint_margin),
            "updateTime": pv.position.update_time,
        }
        for pv in positions
    ]
    return out


def account_v2(view: AccountView, positions: Sequence[MarkedPosition], update_time: int) -> dict[str, Any]:
    """GET /fapi/v2/account (positions: every symbol and side)."""
    out: dict[str, Any] = {
        "feeTier": 0,
        "canTrade": True,
        "canDeposit": True,
        "canWithdraw": True,
        "updateTime": 0,
        "multiAssetsMargin": False,
        "tradeGroupId": -1,
    }
    out.update(_totals(view))
    out["assets"] = [_asset(view, update_time)]
    out["positions"] = [
        {
            "symbol": pv.position.symbol,
            "initialMargin": money(pv.initial_margin + pv.open_order_margin),
            "maintMargin": money(pv.maint_margin),
            "unrealizedProfit": money(pv.unrealized),
            "positionInitialMargin": money(pv.initial_margin),
            "openOrderInitialMargin": money(pv.open_order_margin),
            "leverage": str(pv.leverage),
            "isolated": pv.margin_type == "ISOLATED",
            "entryPrice": f"{pv.position.entry_price:.8f}" if pv.position.amount else "0.0",
            "breakEvenPrice": f"{pv.break_even:.8f}" if pv.position.amount else "0.0",
            "maxNotional": str(max_notional(pv.leverage)),
            "bidNotional": "0",
            "askNotional": "0",
            "positionSide": pv.position.position_side,
            "positionAmt": pv.spec.fmt_qty(pv.position.amount),
            "updateTime": pv.position.update_time,
        }
        for pv in positions
    ]
    return out


def _risk_common(pv: MarkedPosition) -> dict[str, Any]:
    pos = pv.position
    return {
        "symbol": pos.symbol,
        "positionSide": pos.position_side,
        "positionAmt": pv.spec.fmt_qty(pos.amount),
        "entryPrice": f"{pos.entry_price:.8f}" if pos.amount else "0.0",
        "breakEvenPrice": f"{pv.break_even:.8f}" if pos.amount else "0.0",
        "markPrice": f"{pv.mark:.8f}",
        "unRealizedProfit": money(pv.unrealized),
        "liquidationPrice": pv.spec.fmt_price(pv.liquidation_price) if pv.liquidation_price else "0",
        "isolatedMargin": money(_isolated_margin(pv)),
        "notional": money(pv.notional),
        "isolatedWallet": money(pos.isolated_wallet),
    }


def position_risk_v3(pv: MarkedPosition) -> dict[str, Any]:
    """One GET /fapi/v3/positionRisk item."""
    out = _risk_common(pv)
    out.update(
        {
            "marginAsset": "USDT",
            "initialMargin": money(pv.initial_margin + pv.open_order_margin),
            "maintMargin": money(pv.maint_margin),
            "positionInitialMargin": money(pv.initial_margin),
            "openOrderInitialMargin": money(pv.open_order_margin),
            "adl": 0 if pv.position.amount == 0 else 1,
            "bidNotional": "0",
            "askNotional": "0",
            "updateTime": pv.position.update_time,
        }
    )
    return out


def position_risk_v2(pv: MarkedPosition) -> dict[str, Any]:
    """One GET /fapi/v2/positionRisk item (``marginType`` lower case)."""
    out = _risk_common(pv)
    out.update(
        {
            "leverage": str(pv.leverage),
            "maxNotionalValue": str(max_notional(pv.leverage)),
            "marginType": "isolated" if pv.margin_type == "ISOLATED" else "cross",
            "isAutoAddMargin": "false",
            "updateTime": pv.position.update_time,
        }
    )
    return out
