"""The report's PNG plots, drawn with matplotlib's Agg backend on a black background.

Each function writes one PNG and returns its path.  PNGs carry no software tag or date, so the
same result draws the same bytes on the same matplotlib.  The strategy is drawn in the report's
red, buy & hold in grey, other baselines in muted tones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt
import pandas as pd
from matplotlib.figure import Figure

from backtest.metrics import DAY_MS, drawdown, monthly_returns
from backtest.result import BacktestResult

BLACK: Final = "#000000"
TEXT: Final = "#E6E6E6"
GRID: Final = "#2A2A2A"
ACCENT_DARK: Final = "#5C0000"
ACCENT: Final = "#8B0000"
STRATEGY: Final = "#E0403A"  # a lighter red than the accents, so a thin line reads on black
BUY_AND_HOLD: Final = "#A8A8A8"
OTHERS: Final = ("#D9A441", "#5FA8D3", "#7FBF7F", "#C583D9")
GAIN: Final = "#3E9E5E"
LOSS: Final = "#C0392B"
DPI: Final = 100
PNG_METADATA: Final[dict[str, Any]] = {"Software": None}
WINDOW_DAYS: Final = 3
PER_CANDLE_DAYS: Final = 31  # the exposure plot shows single candles up to this many days

RC: Final[dict[str, Any]] = {
    "figure.facecolor": BLACK,
    "axes.facecolor": BLACK,
    "savefig.facecolor": BLACK,
    "axes.edgecolor": ACCENT,
    "axes.labelcolor": TEXT,
    "axes.titlecolor": TEXT,
    "text.color": TEXT,
    "xtick.color": TEXT,
    "ytick.color": TEXT,
    "grid.color": GRID,
    "axes.grid": True,
    "legend.facecolor": "#111111",
    "legend.edgecolor": ACCENT_DARK,
    "font.size": 10,
}

EQUITY_PNG: Final = "equity_drawdown.png"
MONTHLY_PNG: Final = "monthly_returns.png"
PNL_PNG: Final = "trade_pnl.png"
EXPOSURE_PNG: Final = "exposure.png"
RELIABILITY_PNG: Final = "reliability.png"
TRADES_PNG: Final = "trades_window.png"


def _times(ms: Any) -> npt.NDArray[np.float64]:
    """ms UTC as matplotlib date numbers (days since its default epoch, 1970-01-01): plain floats,
    far faster to draw than datetime objects."""
    return np.asarray(ms, dtype=np.float64) / DAY_MS


def _save(fig: Figure, path: Path) -> Path:
    # fixed margins rather than a layout engine: half the drawing time, and the same on every run
    w, h = fig.get_figwidth(), fig.get_figheight()  # inches, so every size gets the same margins
    fig.subplots_adjust(left=0.9 / w, right=1 - 0.25 / w, top=1 - 0.45 / h, bottom=0.8 / h, hspace=0.12)
    fig.savefig(path, format="png", dpi=DPI, metadata=PNG_METADATA)
    plt.close(fig)
    return path


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color=TEXT)


def _date_axis(ax: Any) -> None:
    locator = mdates.AutoDateLocator()  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]


def equity_drawdown(result: BacktestResult, baselines: Mapping[str, BacktestResult], path: Path) -> Path:
    """Equity of the strategy and its baselines (top), the strategy's drawdown (bottom)."""
    with plt.rc_context(RC):
        fig, (top, bottom) = plt.subplots(
            2, 1, figsize=(11, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
        )
        others = iter(OTHERS)
        for name, other in sorted(baselines.items()):
            if other.equity.empty or name == "flat":
                continue
            colour = BUY_AND_HOLD if name == "buy_and_hold" else next(others, BUY_AND_HOLD)
            top.plot(_times(other.equity["ts"]), other.equity["equity_usd"], lw=1.0, color=colour, label=name)
        if not result.equity.empty:
            t = _times(result.equity["ts"])
            top.plot(t, result.equity["equity_usd"], lw=1.4, color=STRATEGY, label=result.strategy)
            dd = drawdown(result).to_numpy() * 100.0
            bottom.fill_between(t, dd, 0.0, color=ACCENT, alpha=0.9, lw=0)
            bottom.plot(t, dd, color=STRATEGY, lw=0.6)
        top.axhline(result.initial_equity_usd, color=GRID, lw=0.8, ls="--")
        top.set_ylabel("equity (USDT)")
        top.set_title(f"{result.symbol} {result.interval}: equity and drawdown")
        top.legend(loc="upper left")
        bottom.set_ylabel("drawdown (%)")
        _date_axis(bottom)
        return _save(fig, path)


def monthly(result: BacktestResult, buy_and_hold: BacktestResult | None, path: Path) -> Path:
    """Each calendar month's return, the strategy's bars beside buy & hold's."""
    ours = monthly_returns(result) * 100.0
    with plt.rc_context(RC):
        fig, ax = plt.subplots(figsize=(11, 4))
        if ours.empty:
            _empty(ax, "no equity")
        else:
            x = np.arange(len(ours))
            width = 0.4 if buy_and_hold is not None else 0.8
            colours = [GAIN if v >= 0 else LOSS for v in ours.to_numpy()]
            ax.bar(
                x - (width / 2 if buy_and_hold is not None else 0),
                ours.to_numpy(),
                width,
                color=colours,
                edgecolor=ACCENT,
                label=result.strategy,
            )
            if buy_and_hold is not None:
                theirs = (monthly_returns(buy_and_hold) * 100.0).reindex(ours.index)
                ax.bar(
                    x + width / 2,
                    theirs.to_numpy(),
                    width,
                    color=BUY_AND_HOLD,
                    alpha=0.7,
                    label="buy_and_hold",
                )
            ax.set_xticks(x, list(ours.index), rotation=45 if len(ours) > 8 else 0, ha="right")
            ax.axhline(0.0, color=TEXT, lw=0.6)
            ax.legend(loc="upper left")
        ax.set_ylabel("return (%)")
        ax.set_title("monthly returns")
        return _save(fig, path)


def trade_pnl(result: BacktestResult, path: Path) -> Path:
    """Histogram of the trades' net PnL in basis points of the entry notional."""
    pnl = result.trades["pnl_bps"].to_numpy(dtype=np.float64)
    with plt.rc_context(RC):
        fig, ax = plt.subplots(figsize=(8, 4))
        if not len(pnl):
            _empty(ax, "no trades")
        else:
            bins = int(np.clip(np.sqrt(len(pnl)) * 2, 10, 80))
            ax.hist(pnl[pnl < 0], bins=bins, range=(pnl.min(), pnl.max()), color=LOSS, label="losers")
            ax.hist(pnl[pnl >= 0], bins=bins, range=(pnl.min(), pnl.max()), color=GAIN, label="winners")
            ax.axvline(float(pnl.mean()), color=TEXT, ls="--", lw=1.0, label=f"mean {pnl.mean():.1f} bps")
            ax.legend(loc="upper left")
        ax.set_xlabel("net PnL per trade (bps)")
        ax.set_ylabel("trades")
        ax.set_title(f"trade PnL distribution ({len(pnl)} trades)")
        return _save(fig, path)


def exposure(result: BacktestResult, path: Path) -> Path:
    """The position's signed notional as a share of equity (per candle over a short span, the daily
    mean of the long and of the short side over a long one), and each day's share of time in market."""
    eq = result.equity
    with plt.rc_context(RC):
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 5), sharex=True)
        if eq.empty:
            _empty(top, "no equity")
        else:
            t = _times(eq["ts"])
            sign = np.sign(eq["position_qty"].to_numpy(dtype=np.float64))
            lev = sign * np.abs(eq["position_notional_usd"].to_numpy(dtype=np.float64))
            lev = lev / eq["equity_usd"].to_numpy(dtype=np.float64)
            days = eq["ts"].to_numpy(dtype=np.int64) // DAY_MS
            every_day = np.arange(days[0], days[-1] + 1)
            edges = _times(np.r_[every_day, every_day[-1] + 1] * DAY_MS)

            def daily(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
                """Mean of each UTC day, every day of the span (0 for a day without candles)."""
                means = pd.Series(values).groupby(days).mean().reindex(every_day, fill_value=0.0)
                return np.asarray(means, dtype=np.float64)

            if len(every_day) > PER_CANDLE_DAYS:
                top.stairs(
                    daily(np.maximum(lev, 0.0)), edges, fill=True, color=GAIN, label="long (daily mean)"
                )
                top.stairs(
                    daily(np.minimum(lev, 0.0)), edges, fill=True, color=LOSS, label="short (daily mean)"
                )
                top.legend(loc="upper left")
            else:
                top.fill_between(t, lev, 0.0, step="post", color=ACCENT, lw=0)
                top.plot(t, lev, drawstyle="steps-post", color=STRATEGY, lw=0.6)
            bottom.stairs(daily((sign != 0).astype(np.float64)) * 100.0, edges, fill=True, color=ACCENT)
        top.axhline(0.0, color=TEXT, lw=0.6)
        top.set_ylabel("notional / equity")
        top.set_title("exposure (long > 0, short < 0)")
        bottom.set_ylabel("time in market (%)")
        _date_axis(bottom)
        return _save(fig, path)


def reliability(table: Sequence[Mapping[str, float]], name: str, path: Path) -> Path:
    """Reliability diagram: mean probability against the up share in each of its bins."""
    with plt.rc_context(RC):
        fig, (ax, counts) = plt.subplots(
            2, 1, figsize=(6, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
        )
        ax.plot([0, 1], [0, 1], color=BUY_AND_HOLD, ls="--", lw=1.0, label="perfect calibration")
        if table:
            p = [row["mean_p"] for row in table]
            up = [row["up_share"] for row in table]
            n = np.asarray([row["n"] for row in table])
            ax.plot(p, up, color=STRATEGY, marker="o", lw=1.4, label=name)
            counts.bar(
                [(row["lo"] + row["hi"]) / 2 for row in table],
                n,
                width=[row["hi"] - row["lo"] for row in table],
                color=ACCENT,
                edgecolor=ACCENT_DARK,
            )
        else:
            _empty(ax, "no labelled decisions")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_ylabel("observed up share")
        ax.set_title(f"reliability: {name}")
        ax.legend(loc="upper left")
        counts.set_xlabel("predicted probability of up")
        counts.set_ylabel("decisions")
        return _save(fig, path)


def default_window(result: BacktestResult, days: int = WINDOW_DAYS) -> tuple[int, int]:
    """``[start, end)`` ms of the last ``days`` UTC days with a trade entry or exit (the last
    ``days`` days of candles when there is no trade)."""
    trades = result.trades
    if len(trades):
        stamps = np.r_[
            trades["entry_ms"].to_numpy(dtype=np.int64), trades["exit_ms"].to_numpy(dtype=np.int64)
        ]
        chosen = np.unique(stamps // DAY_MS)[-days:]
        return int(chosen[0]) * DAY_MS, (int(chosen[-1]) + 1) * DAY_MS
    if result.candles.empty:
        return result.start_ms, result.end_ms
    last = int(result.candles["open_time"].iloc[-1]) // DAY_MS + 1
    return (last - days) * DAY_MS, last * DAY_MS


def trades_window(result: BacktestResult, path: Path, window: tuple[int, int] | None = None) -> Path:
    """Close prices over ``window`` (default :func:`default_window`) with entries and exits marked."""
    start, end = window if window is not None else default_window(result)
    c = result.candles
    shown = c[(c["open_time"] >= start) & (c["open_time"] < end)]
    t = result.trades
    entries = t[(t["entry_ms"] >= start) & (t["entry_ms"] < end)]
    exits = t[(t["exit_ms"] >= start) & (t["exit_ms"] < end)]
    with plt.rc_context(RC):
        fig, ax = plt.subplots(figsize=(11, 4.5))
        if shown.empty:
            _empty(ax, "no candles in the window")
        else:
            ax.plot(_times(shown["open_time"]), shown["close"], color=TEXT, lw=0.8, label="close")
            for side, marker, colour in (("LONG", "^", GAIN), ("SHORT", "v", LOSS)):
                rows = entries[entries["side"] == side]
                if len(rows):
                    ax.scatter(
                        _times(rows["entry_ms"]),
                        rows["entry_price"],
                        marker=marker,
                        s=60,
                        color=colour,
                        edgecolors=TEXT,
                        linewidths=0.5,
                        zorder=3,
                        label=f"{side.lower()} entry",
                    )
            if len(exits):
                ax.scatter(
                    _times(exits["exit_ms"]),
                    exits["exit_price"],
                    marker="x",
                    s=50,
                    color=STRATEGY,
                    zorder=3,
                    label="exit",
                )
            ax.legend(loc="upper left")
            _date_axis(ax)
        span = f"{pd.Timestamp(start, unit='ms'):%Y-%m-%d} to {pd.Timestamp(end - 1, unit='ms'):%Y-%m-%d}"
        ax.set_title(f"{result.symbol} price with entries and exits, {span}")
        ax.set_ylabel("price (USDT)")
        return _save(fig, path)
