"""The EMA 9/21 crossover reference strategy, run through the same order path as the ensemble.

Signals (:func:`cross_signals`): the exponential moving averages of the close (pandas ``ewm(span=n,
adjust=False)``, seeded with the first close) over every candle loaded, warm-up included; at the
close of candle ``t`` the fast EMA crossing above the slow one (``fast[t-1] <= slow[t-1]`` and
``fast[t] > slow[t]``) is a LONG signal, crossing below a SHORT one.

Orders (:class:`EmaCross`): on a signal against the position held, the position is closed at
market (the order manager's reduce-only close) and the new side is entered at market for a fixed
``quantity``, with a protective bracket far away (``bracket_pct``) that the reference never
reaches in practice, as every entry here must carry one.  Both orders reach the venue at the next
candle's open: the paper exchange fills a taker at the price of its path at that instant (the open)
moved by the config's slippage, and charges the config's taker fee on each fill.

Conventions for comparing with backtesting.py (``tests/`` and ``bench/``): ``trade_on_close=False``
(market orders fill at the next bar's open), ``commission`` = the taker fee, no slippage and no
funding on either side (backtesting.py models neither), a whole-unit ``size`` on a price scaled so a
unit is the quantity traded here, ``exclusive_orders=True`` (a new order closes the position first),
and no signal acted on at the span's first candle (backtesting.py first calls ``next()`` on the
second bar).  With these, the trades (times, sides, prices) are the same and the net PnL of each
agrees to 1e-6 USDT.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pandas as pd

from coordinator.risk import AccountView
from coordinator.side import Side
from coordinator.snapshot import MarketSnapshot

if TYPE_CHECKING:
    from backtest.engine import Run

NAME = "ema_cross_9_21"


def ema(close: npt.ArrayLike, span: int) -> npt.NDArray[np.float64]:
    """The EMA both implementations use (pandas, ``adjust=False``)."""
    return pd.Series(np.asarray(close, dtype=np.float64)).ewm(span=span, adjust=False).mean().to_numpy()


def cross_signals(close: npt.ArrayLike, fast: int = 9, slow: int = 21) -> npt.NDArray[np.int8]:
    """+1 where the fast EMA crosses above the slow one at that close, -1 below, else 0."""
    f, s = ema(close, fast), ema(close, slow)
    out = np.zeros(len(f), dtype=np.int8)
    above = f > s
    out[1:][above[1:] & ~above[:-1]] = 1
    out[1:][~above[1:] & above[:-1]] = -1
    return out


@dataclass
class EmaCross:
    """The reference strategy (module docstring); ``signals`` are per row of the run's history."""

    signals: npt.NDArray[np.int8]
    quantity: Decimal
    bracket_pct: Decimal = Decimal("0.5")
    name: str = NAME
    side: int = 0  # the position held: +1 long, -1 short, 0 flat

    async def on_candle(self, run: Run, i: int, snap: MarketSnapshot, account: AccountView) -> str:
        signal = int(self.signals[i])
        if signal == 0 or signal == self.side:
            return "HOLD"
        exchange = run.exchange
        if self.side != 0:
            await exchange.close_position(snap.symbol)
            await run.settle_now()
        price = snap.mark_price
        side = Side.BUY if signal > 0 else Side.SELL
        away = price * self.bracket_pct
        stop, take = (price - away, price + away) if signal > 0 else (price + away, price - away)
        await exchange.place_order(snap.symbol, side, self.quantity, stop_loss=stop, take_profit=take)
        self.side = signal
        return "LONG" if signal > 0 else "SHORT"
