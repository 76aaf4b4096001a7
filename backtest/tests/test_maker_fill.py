"""The backtest's maker model on the shipped BTCUSDT candles: a post-only entry the market only
touches is not filled; one the market trades through is.

A post-only (GTX) BUY is placed through the coordinator's exchange facade, in-process, at the close
of a candle whose next candle dips to a low that no later candle of the span comes back to.  At
exactly that low, the market touched the order's price and turned: the order rests unfilled to the
end.  One tick above it, the market traded through: the order fills, as a maker, at its price.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backtest import settings
from backtest.data import MarketHistory, history_of, load_candles
from backtest.engine import Run, RunOptions, compose
from backtest.transport import ACCOUNT
from coordinator.exchange.facade import Placement
from coordinator.risk import AccountView
from coordinator.side import Side
from coordinator.snapshot import MarketSnapshot

SYMBOL = "BTCUSDT"
TICK = Decimal("0.1")
QTY = Decimal("0.002")


def _ms(day: str) -> int:
    return int(pd.Timestamp(day, tz="UTC").value // 1_000_000)


@dataclass
class PostOnlyOnce:
    """Places one post-only BUY at ``price`` at the close of row ``at``; does nothing else."""

    at: int
    price: Decimal
    name: str = "post_only_once"
    placement: list[Placement] = field(default_factory=list)

    async def on_candle(self, run: Run, i: int, snap: MarketSnapshot, account: AccountView) -> str:
        if i != self.at:
            return "HOLD"
        self.placement.append(
            await run.exchange.place_order(
                snap.symbol,
                Side.BUY,
                QTY,
                stop_loss=self.price * Decimal("0.97"),
                take_profit=self.price * Decimal("1.03"),
                order_type="LIMIT",
                price=self.price,
                post_only=True,
            )
        )
        return "LONG"


@pytest.fixture(scope="module")
def history(shared_data: Path) -> MarketHistory:
    candles, _ = load_candles(SYMBOL)
    return history_of(candles, SYMBOL, _ms("2024-03-05"), _ms("2024-03-07"))


def _touched_once(history: MarketHistory) -> tuple[int, Decimal]:
    """``(row, low)``: the first row whose next candle opens above its own low, which no later candle
    of the span (nor the candle after it) reaches again, with two ticks of margin."""
    c = history.candles
    low, opn = c["low"].to_numpy(np.float64), c["open"].to_numpy(np.float64)
    for i in range(history.first, history.stop - 40):
        j = i + 1
        later = low[j + 1 : history.stop + 1]
        if opn[j] - low[j] > 5.0 and later.min() > low[j] + 0.2:
            return i, Decimal(repr(float(low[j])))
    raise AssertionError("no candle of the span is touched only once")


def _run(history: MarketHistory, at: int, price: Decimal) -> tuple[PostOnlyOnce, list[tuple[Decimal, bool]]]:
    """The strategy after the span, and the venue's fills of the account: ``(price, maker)``."""

    async def go() -> tuple[PostOnlyOnce, list[tuple[Decimal, bool]]]:
        strategy = PostOnlyOnce(at, price)
        run = await compose(
            settings.load(None, SYMBOL), history, strategy=strategy, options=RunOptions(funding=False)
        )
        try:
            await run.run()
            fills = [(t.price, t.maker) for t in run.service.engine.trades.get(ACCOUNT, [])]
        finally:
            await run.close()
        return strategy, fills

    return asyncio.run(go())


def test_a_post_only_order_the_market_only_touches_is_not_filled(history: MarketHistory) -> None:
    at, low = _touched_once(history)
    strategy, fills = _run(history, at, low)
    placed = strategy.placement[0]
    assert not placed.rejected  # accepted as a maker (below the market when placed)
    assert fills == []


def test_a_post_only_order_the_market_trades_through_is_filled_as_maker(history: MarketHistory) -> None:
    at, low = _touched_once(history)
    strategy, fills = _run(history, at, low + TICK)
    assert not strategy.placement[0].rejected
    assert fills[0] == (low + TICK, True)  # at its limit price, as a maker
