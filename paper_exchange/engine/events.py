"""User-data stream events as Binance JSON dicts.

``ORDER_TRADE_UPDATE`` carries every key of Binance's documented sample; ``ALGO_UPDATE`` the keys
Binance lists; ``ACCOUNT_UPDATE`` the balance (``B``) and the changed positions (``P``);
``TRADE_LITE`` is sent for every fill.  Liquidations use order type ``LIQUIDATION``, execution
type ``CALCULATED`` and a client id ``autoclose-<time>``.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from paper_exchange.engine.instruments import SymbolSpec
from paper_exchange.engine.models import ZERO, AlgoOrder, Order, Position, Trade


def money(value: Decimal) -> str:
    """USDT amounts as Binance prints them: 8 decimals."""
    return f"{value:.8f}"


def order_trade_update(
    order: Order, spec: SymbolSpec, exec_type: str, now: int, trade: Trade | None = None
) -> dict[str, Any]:
    """An ``ORDER_TRADE_UPDATE`` for ``order`` (with the last fill when ``trade`` is given)."""
    fp, fq = spec.fmt_price, spec.fmt_qty
    avg = order.avg_price()
    o: dict[str, Any] = {
        "s": order.symbol,
        "c": order.client_order_id,
        "S": order.side,
        "o": order.type,
        "f": order.time_in_force,
        "q": fq(order.orig_qty),
        "p": fp(order.price),
        "ap": fp(avg) if avg else "0",
        "sp": fp(order.stop_price) if order.stop_price else "0",
        "x": exec_type,
        "X": order.status.value,
        "i": order.order_id,
        "l": fq(trade.qty) if trade else "0",
        "z": fq(order.executed_qty),
        "L": fp(trade.price) if trade else "0",
        "N": "USDT",
        "n": money(trade.commission) if trade else "0",
        "T": now,
        "t": trade.trade_id if trade else 0,
        "b": "0",
        "a": "0",
        "m": trade.maker if trade else False,
        "R": order.reduce_only,
        "wt": order.working_type,
        "ot": order.orig_type,
        "ps": order.position_side,
        "cp": order.close_position,
        "rp": money(trade.realized_pnl) if trade else "0",
        "pP": order.price_protect,
        "si": 0,
        "ss": 0,
        "V": "EXPIRE_MAKER",
        "pm": "NONE",
        "gtd": 0,
        "er": "0",
    }
    return {"e": "ORDER_TRADE_UPDATE", "E": now, "T": now, "o": o}


def trade_lite(order: Order, spec: SymbolSpec, trade: Trade, now: int) -> dict[str, Any]:
    """A ``TRADE_LITE`` event for one fill."""
    return {
        "e": "TRADE_LITE",
        "E": now,
        "T": now,
        "s": order.symbol,
        "q": spec.fmt_qty(order.orig_qty),
        "p": spec.fmt_price(order.price),
        "m": trade.maker,
        "c": order.client_order_id,
        "S": order.side,
        "L": spec.fmt_price(trade.price),
        "l": spec.fmt_qty(trade.qty),
        "t": trade.trade_id,
        "i": order.order_id,
    }


def algo_update(algo: AlgoOrder, spec: SymbolSpec, now: int) -> dict[str, Any]:
    """An ``ALGO_UPDATE`` for ``algo``."""
    fp, fq = spec.fmt_price, spec.fmt_qty
    o: dict[str, Any] = {
        "caid": algo.client_algo_id,
        "aid": algo.algo_id,
        "at": "CONDITIONAL",
        "o": algo.order_type,
        "s": algo.symbol,
        "S": algo.side,
        "ps": algo.position_side,
        "f": algo.time_in_force,
        "q": fq(algo.quantity),
        "X": algo.status.value,
        "ai": str(algo.actual_order_id) if algo.actual_order_id is not None else "",
        "ap": fp(algo.actual_price),
        "aq": fq(algo.actual_qty),
        "act": algo.actual_type if algo.actual_order_id is not None else "0",
        "tp": fp(algo.trigger_price),
        "p": fp(algo.price) if algo.price else "0",
        "V": "EXPIRE_MAKER",
        "wt": algo.working_type,
        "pm": "NONE",
        "cp": algo.close_position,
        "pP": algo.price_protect,
        "R": algo.reduce_only,
        "tt": algo.trigger_time,
        "gtd": 0,
    }
    if algo.reject_reason:
        o["rm"] = algo.reject_reason
    return {"e": "ALGO_UPDATE", "E": now, "T": now, "o": o}


def account_update(
    reason: str,
    wallet: Decimal,
    cross_wallet: Decimal,
    change: Decimal,
    positions: Iterable[tuple[Position, SymbolSpec, Decimal, Decimal, str]],
    now: int,
) -> dict[str, Any]:
    """An ``ACCOUNT_UPDATE``; ``positions`` holds (position, spec, unrealised, break-even, margin type)."""
    plist = [
        {
            "s": pos.symbol,
            "pa": spec.fmt_qty(pos.amount),
            "ep": f"{pos.entry_price:.8f}" if pos.amount else "0",
            "bep": f"{bep:.8f}" if pos.amount else "0",
            "cr": money(pos.realized),
            "up": money(upnl),
            "mt": "isolated" if margin_type == "ISOLATED" else "cross",
            "iw": money(pos.isolated_wallet if margin_type == "ISOLATED" else ZERO),
            "ps": pos.position_side,
        }
        for pos, spec, upnl, bep, margin_type in positions
    ]
    return {
        "e": "ACCOUNT_UPDATE",
        "E": now,
        "T": now,
        "a": {
            "m": reason,
            "B": [{"a": "USDT", "wb": money(wallet), "cw": money(cross_wallet), "bc": money(change)}],
            "P": plist,
        },
    }
