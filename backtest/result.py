"""What a backtest run produces, handed from the engine to the report.

The engine (:mod:`backtest.engine`) fills a :class:`BacktestResult`; the report
(:mod:`backtest.report`) reads only this, so either side can change as long as the columns
below hold. Times are ms UTC (a decision's ``ts`` is the close time of the candle it saw);
money is USDT; a trade's ``side`` is LONG or SHORT.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

CANDLE_COLUMNS = ("open_time", "open", "high", "low", "close", "volume")
"""The span's candles, oldest first (``open_time`` ms)."""

EQUITY_COLUMNS = ("ts", "equity_usd", "position_qty", "position_notional_usd", "fees_usd", "funding_usd")
"""One row per candle close: marked-to-market equity, the signed position and its notional, and the
fees and funding paid so far (cumulative, positive = paid)."""

TRADE_COLUMNS = (
    "trade_id", "symbol", "side", "quantity", "entry_ms", "entry_price", "exit_ms", "exit_price",
    "exit_reason", "gross_pnl_usd", "fees_usd", "funding_usd", "pnl_usd", "pnl_bps", "entry_style",
    "model_version",
)  # fmt: skip
"""One row per closed trade. ``pnl_usd`` = gross − fees − funding; ``pnl_bps`` = ``pnl_usd`` over the
entry notional in basis points; ``entry_style`` is ``maker`` or ``taker``; ``model_version``: the
models (``id=version`` joined by ``,``) whose votes decided the entry."""

DECISION_COLUMNS = (
    "ts", "symbol", "action", "probability", "confidence", "expected_value_bps", "size_fraction",
    "reasons", "risk", "outcome", "model_version",
)  # fmt: skip
"""One row per decision. ``reasons``: the hold reasons joined by ``,``; ``risk``: ``approved``,
``refused:<reasons>`` or empty for a HOLD; ``outcome``: the label at the decision's horizon (1 up,
0 not up, NaN when the span ends first). Beside these, one float column ``p:<model_id>`` per model:
the probability that model voted (NaN when it did not vote)."""

MODEL_PREFIX = "p:"


@dataclass(frozen=True)
class Costs:
    """The cost assumptions the run used (the config's)."""

    maker_fee_bps: float
    taker_fee_bps: float
    slippage_bps: float
    entry: str  # the config's entry style: market, maker, maker_preferred
    latency_ms: int = 0  # from a candle's close until the decision's orders reach the venue


@dataclass
class BacktestResult:
    """One symbol's run over one span."""

    symbol: str
    interval: str
    start_ms: int
    end_ms: int
    initial_equity_usd: float
    costs: Costs
    candles: pd.DataFrame
    equity: pd.DataFrame
    trades: pd.DataFrame
    decisions: pd.DataFrame
    strategy: str = "ensemble"  # or a reference strategy's name, e.g. "ema_cross_9_21"
    funding: pd.DataFrame | None = None
    """The venue's funding settlements within the span (``funding_ms``, ``rate``: what it charged a
    position held then); None when the run charged no funding."""
    stage_us: dict[str, float] = field(default_factory=dict)  # µs per candle for each pipeline stage
    meta: dict[str, Any] = field(default_factory=dict)  # config path, model directories, versions

    def check(self) -> None:
        """Raise ValueError when a frame lacks a column the report reads."""
        for name, frame, columns in (
            ("candles", self.candles, CANDLE_COLUMNS),
            ("equity", self.equity, EQUITY_COLUMNS),
            ("trades", self.trades, TRADE_COLUMNS),
            ("decisions", self.decisions, DECISION_COLUMNS),
        ):
            missing = [c for c in columns if c not in frame.columns]
            if missing:
                raise ValueError(f"backtest result: {name} lacks {', '.join(missing)}")

    def model_ids(self) -> list[str]:
        """The models that voted, from the ``p:<model_id>`` columns."""
        return [c[len(MODEL_PREFIX) :] for c in self.decisions.columns if c.startswith(MODEL_PREFIX)]
