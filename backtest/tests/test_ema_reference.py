"""The EMA 9/21 reference through `xylen backtest`'s order path and through backtesting.py, on the
shipped BTCUSDT 5m candles, with matching fill assumptions (:mod:`backtest.ema`): same trades, same
equity within rounding."""

from __future__ import annotations

import asyncio
import itertools
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from backtesting import Backtest, Strategy

from backtest import settings
from backtest.data import history_of, load_candles
from backtest.ema import EmaCross, cross_signals
from backtest.engine import RunOptions, run_backtest

QTY = Decimal("0.01")
FEE = 0.0005


def _ms(day: str) -> int:
    return int(pd.Timestamp(day, tz="UTC").value // 1_000_000)


def reference_run(shared_data: Path, start: str, end: str) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    candles, _ = load_candles("BTCUSDT")
    history = history_of(candles, "BTCUSDT", _ms(start), _ms(end), warmup_candles=200)
    config = settings.load(None, "BTCUSDT")
    trading = config.trading.model_copy(
        update={"slippage_bps": 0.0, "entry": "market", "taker_fee_bps": FEE * 1e4}
    )
    config = config.model_copy(update={"trading": trading})
    signals = cross_signals(history.candles["close"].to_numpy())
    # backtesting.py first calls next() on the span's second bar: no signal acted on at its first
    signals[: history.first + 1] = 0
    result = asyncio.run(
        run_backtest(config, history, strategy=EmaCross(signals, QTY), options=RunOptions(funding=False))
    )
    return result.trades, history.span(), signals[history.first : history.stop]


def backtesting_py(span: pd.DataFrame, signals: np.ndarray) -> pd.DataFrame:
    """The same signals in backtesting.py: a unit is QTY of BTC (prices scaled by QTY)."""
    scale = float(QTY)
    frame = pd.DataFrame(
        {
            "Open": span["open"].to_numpy() * scale,
            "High": span["high"].to_numpy() * scale,
            "Low": span["low"].to_numpy() * scale,
            "Close": span["close"].to_numpy() * scale,
            "Volume": span["volume"].to_numpy(),
            "Signal": signals.astype(float),
        },
        index=pd.to_datetime(span["open_time"], unit="ms"),
    )

    class Cross(Strategy):  # type: ignore[misc]
        def init(self) -> None:
            self.signal = self.I(lambda: self.data.Signal, name="signal")

        def next(self) -> None:
            s = self.signal[-1]
            if s > 0 and not self.position.is_long:
                self.buy(size=1)
            elif s < 0 and not self.position.is_short:
                self.sell(size=1)

    bt = Backtest(frame, Cross, cash=1_000_000, commission=FEE, exclusive_orders=True, trade_on_close=False)
    stats = bt.run()
    trades: pd.DataFrame = stats["_trades"]
    return trades


def test_same_trades_and_equity_as_backtesting_py(shared_data: Path) -> None:
    ours, span, signals = reference_run(shared_data, "2024-03-01", "2024-03-02")
    theirs = backtesting_py(span, signals)
    assert len(ours) >= 10, "the span must hold enough crossovers to compare"
    # backtesting.py closes the trade still open at the end of the data; ours leaves it open
    theirs = theirs.iloc[: len(ours)]
    assert len(theirs) == len(ours)
    entry_ms = (theirs["EntryTime"].astype("int64") // 1_000_000).to_numpy()
    exit_ms = (theirs["ExitTime"].astype("int64") // 1_000_000).to_numpy()
    assert list(ours["entry_ms"]) == list(entry_ms)
    assert list(ours["exit_ms"]) == list(exit_ms)
    assert list(ours["side"]) == ["LONG" if s > 0 else "SHORT" for s in theirs["Size"]]
    np.testing.assert_allclose(ours["entry_price"], theirs["EntryPrice"] / float(QTY), rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours["exit_price"], theirs["ExitPrice"] / float(QTY), rtol=0, atol=1e-6)
    # net PnL per trade (fees on both fills) and so the equity after every trade, within rounding
    np.testing.assert_allclose(ours["pnl_usd"], theirs["PnL"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.cumsum(ours["pnl_usd"]), np.cumsum(theirs["PnL"]), rtol=0, atol=1e-5)


@pytest.mark.parametrize("prices", [[1.0, 2, 3, 2, 1, 1, 2, 3, 4, 5] * 5])
def test_cross_signals_alternate(prices: list[float]) -> None:
    signals = cross_signals(prices)
    nonzero = signals[signals != 0]
    assert len(nonzero) >= 2
    assert all(a != b for a, b in itertools.pairwise(nonzero))
