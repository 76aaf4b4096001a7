"""Where the path meets a price level, and what a crossing fills.

Liquidity model: a taker (MARKET order, marketable LIMIT) fills completely at once at the
current path price moved against it by ``slippage_bps`` (a marketable LIMIT never beyond its
limit).  A resting LIMIT fills at its limit price when the path crosses it (below), but within one
leg of the path (a third of a candle) at most ``participation`` x the leg's volume, rounded
down to the step size, however finely the replay clock cuts the leg; the rest waits for the
next legs, so large orders fill over several candles (PARTIALLY_FILLED in between).  Each
resting order draws on the leg's volume independently of the others (no queue between
orders).  What an order used of the current leg is kept in memory only: after a restart the
allowance of the leg in progress starts again.

Touch or trade-through: a stop or take-profit trigger and a liquidation happen when the path
*reaches* their level (:func:`cross_time`; Binance triggers on the price reaching the stop price).
A resting LIMIT is a maker waiting in the queue at its price: a market that only touches that price
may have traded the queue ahead of it and turned back, so an honest maker model fills it only when
the market trades *through* its price (:func:`through_time`: the first instant the path is strictly
beyond the limit; a path that turns exactly at the limit never fills it).  This is the rule a
post-only (GTX) entry needs to be judged fairly, and it suits every resting limit alike, as the
engine cannot tell whose order sits first at a price; the walk of :mod:`paper_exchange.engine.core`
chooses which of the two functions times its resting orders.
"""

from __future__ import annotations

import math
from decimal import ROUND_DOWN, Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from paper_exchange.feed import Leg


def reached(price: float, level: float, at_or_below: bool) -> bool:
    """Whether ``price`` satisfies ``price <= level`` (``at_or_below``) or ``price >= level``."""
    return price <= level if at_or_below else price >= level


def cross_time(leg: Leg, t: int, level: float, at_or_below: bool) -> int | None:
    """First time in ``[t, leg.t1]`` when the path satisfies the condition, else None."""
    p0 = leg.price_at(t)
    if reached(p0, level, at_or_below):
        return t
    p1 = leg.p1
    if not reached(p1, level, at_or_below) or p1 == p0:
        return None
    frac = (level - p0) / (p1 - p0)
    when = t + math.ceil(frac * (leg.t1 - t))
    return min(max(when, t), leg.t1)


def beyond(price: float, level: float, below: bool) -> bool:
    """Whether ``price`` is strictly past ``level``: below it (``below``) or above it."""
    return price < level if below else price > level


def through_time(leg: Leg, t: int, level: float, below: bool) -> int | None:
    """First time in ``[t, leg.t1]`` when the path trades through ``level`` (strictly below it when
    ``below``, strictly above otherwise), else None: the fill time of a resting limit."""
    p0 = leg.price_at(t)
    if beyond(p0, level, below):
        return t
    p1 = leg.p1
    if not beyond(p1, level, below):
        return None
    frac = (level - p0) / (p1 - p0)
    when = min(max(t + math.floor(frac * (leg.t1 - t)), t), leg.t1)
    while when < leg.t1 and not beyond(leg.price_at(when), level, below):
        when += 1  # the level is crossed between two ms: the first whole ms past it
    return when


def taker_price(path_price: Decimal, side: str, slippage_bps: Decimal, tick: Decimal) -> Decimal:
    """Fill price of a taker: the path price moved ``slippage_bps`` against the order, on the tick."""
    move = slippage_bps / Decimal(10_000)
    factor = Decimal(1) + move if side == "BUY" else Decimal(1) - move
    return ((path_price * factor) / tick).to_integral_value() * tick


def participation_qty(leg_volume: float, participation: Decimal, step: Decimal) -> Decimal:
    """The most a resting order may fill in one leg, rounded down to ``step``."""
    raw = Decimal(repr(leg_volume)) * participation
    return (raw / step).to_integral_value(rounding=ROUND_DOWN) * step
