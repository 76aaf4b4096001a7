"""The figures of a backtest: performance, costs, activity, decision quality and baselines.

Every function reads only a :class:`~backtest.result.BacktestResult`, so the strategy, its
baselines and any reference strategy are scored by the same code.

* **Returns** are daily: the equity curve's last value of each UTC day, each day's return taken
  against the day before (the first day against the initial equity).  Sharpe and Sortino are
  annualised with ``sqrt(365)`` (crypto trades every day); Sharpe divides the mean daily return by
  its sample standard deviation, Sortino by the downside deviation ``sqrt(mean(min(r, 0)^2))``
  over all days (target 0).  Daily rather than per-candle returns, so intraday noise and the
  serial correlation of 5-minute returns do not inflate the ratios.
* **Max drawdown** is read from the per-candle equity curve (positive fraction of the running
  peak); **Calmar** is CAGR over it.  **CAGR** compounds the total return over the span's
  length in 365-day years.
* **Exposure** is the share of candle closes with a position; **turnover** the entry and exit
  notional of all closed trades over the initial equity.  Fees and funding are the run's
  cumulative totals (an open position's entry fee included); trades are also grouped by the model
  versions that decided them.
* **Decision quality** (each model's ``p:<id>`` and the ensemble's ``probability`` against
  ``outcome``) reuses the training evaluation: AUC with a 95 % day-block bootstrap interval
  (fixed seed), log-loss and Brier beside those of the constant base rate, ECE over 15 bins.  The
  interval is the evaluation's own resampling computed from day-pair counts
  (:func:`day_pair_auc_interval`), so multi-year spans score in seconds.  The
  constant is the up share of all labelled decisions of the span: known only afterwards, so it is
  a demanding bar (a model must beat the best constant chosen in hindsight).
* **Baselines** come from the candles with the run's own costs: buy & hold enters at the first
  candle's open and leaves at the last candle's close, one taker round trip with slippage on both
  fills, and pays the funding the venue charged at each settlement in between (the run's
  :attr:`~backtest.result.BacktestResult.funding`, at the close before it); flat never trades.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from backtest.result import MODEL_PREFIX, BacktestResult
from model_server.training.evaluation import N_BOOT, ProbabilityReport, evaluate
from xylen.data.quality import check_candles
from xylen.data.schema import interval_ms, normalize_candles

DAY_MS: Final = 86_400_000
YEAR_DAYS: Final = 365
ENSEMBLE: Final = "ensemble"
BOOT_SEED: Final = 0
F64 = npt.NDArray[np.float64]
HOLD: Final = "HOLD"


# --- the equity curve ---


def daily_returns(result: BacktestResult) -> pd.Series:
    """Simple return of each UTC day (index: day number since the epoch)."""
    equity = result.equity
    if equity.empty:
        return pd.Series(dtype=np.float64)
    days = equity["ts"].to_numpy(dtype=np.int64) // DAY_MS
    closes = pd.Series(equity["equity_usd"].to_numpy(dtype=np.float64)).groupby(days).last()
    previous = closes.shift(1)
    previous.iloc[0] = result.initial_equity_usd
    return (closes / previous - 1.0).astype(np.float64)


def final_equity(result: BacktestResult) -> float:
    if result.equity.empty:
        return result.initial_equity_usd
    return float(result.equity["equity_usd"].iloc[-1])


def total_return(result: BacktestResult) -> float:
    return final_equity(result) / result.initial_equity_usd - 1.0


def span_days(result: BacktestResult) -> float:
    return max(result.end_ms - result.start_ms, 0) / DAY_MS


def cagr(result: BacktestResult) -> float:
    """Compound annual growth over the span (NaN for an empty span, -1 when equity is gone)."""
    years = span_days(result) / YEAR_DAYS
    growth = 1.0 + total_return(result)
    if years <= 0:
        return math.nan
    if growth <= 0:
        return -1.0
    return float(growth ** (1.0 / years) - 1.0)


def sharpe(returns: pd.Series) -> float:
    """Annualised Sharpe of daily returns (risk-free 0); NaN with fewer than 2 days or no spread."""
    r = returns.to_numpy(dtype=np.float64)
    if len(r) < 2:
        return math.nan
    sd = float(np.std(r, ddof=1))
    return float(np.mean(r) / sd * math.sqrt(YEAR_DAYS)) if sd > 0 else math.nan


def sortino(returns: pd.Series) -> float:
    """Annualised Sortino of daily returns: mean over the downside deviation (target 0)."""
    r = returns.to_numpy(dtype=np.float64)
    if len(r) < 2:
        return math.nan
    downside = float(np.sqrt(np.mean(np.minimum(r, 0.0) ** 2)))
    return float(np.mean(r) / downside * math.sqrt(YEAR_DAYS)) if downside > 0 else math.nan


def drawdown(result: BacktestResult) -> pd.Series:
    """Per-candle drawdown: equity over its running peak (the initial equity counts) minus 1."""
    equity = result.equity["equity_usd"].to_numpy(dtype=np.float64)
    peak = np.maximum.accumulate(np.r_[result.initial_equity_usd, equity])[1:]
    return pd.Series(equity / peak - 1.0, index=result.equity.index, dtype=np.float64)


def max_drawdown(result: BacktestResult) -> float:
    """The deepest drawdown as a positive fraction (0.25 = 25 % below the peak)."""
    dd = drawdown(result)
    return max(0.0, float(-dd.min())) if len(dd) else 0.0


def calmar(result: BacktestResult) -> float:
    mdd = max_drawdown(result)
    return cagr(result) / mdd if mdd > 0 else math.nan


def exposure(result: BacktestResult) -> float:
    """Share of candle closes with an open position."""
    qty = result.equity["position_qty"].to_numpy(dtype=np.float64)
    return float(np.mean(qty != 0.0)) if len(qty) else 0.0


# --- trades ---


def win_rate(trades: pd.DataFrame) -> float:
    return float((trades["pnl_usd"] > 0).mean()) if len(trades) else math.nan


def profit_factor(trades: pd.DataFrame) -> float:
    """Gross profit of winners over gross loss of losers (inf with no loss, NaN with no trade)."""
    pnl = trades["pnl_usd"].to_numpy(dtype=np.float64)
    gain, loss = float(pnl[pnl > 0].sum()), float(-pnl[pnl < 0].sum())
    if loss > 0:
        return gain / loss
    return math.inf if gain > 0 else math.nan


def expectancy_bps(trades: pd.DataFrame) -> float:
    return float(trades["pnl_bps"].mean()) if len(trades) else math.nan


def traded_notional(trades: pd.DataFrame) -> float:
    q = trades["quantity"].to_numpy(dtype=np.float64)
    entry, exit_ = (trades[c].to_numpy(dtype=np.float64) for c in ("entry_price", "exit_price"))
    return float(np.sum(np.abs(q) * (entry + exit_)))


def by_model_version(trades: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Closed trades grouped by the model versions that decided their entry (walk-forward runs
    change them window by window): count, net PnL, win rate and expectancy."""
    out: dict[str, dict[str, float]] = {}
    for version, group in trades.groupby(trades["model_version"].fillna("").astype(str), sort=True):
        out[str(version)] = {
            "trades": len(group),
            "pnl_usd": float(group["pnl_usd"].sum()),
            "win_rate": win_rate(group),
            "expectancy_bps": expectancy_bps(group),
        }
    return out


def _cumulative(result: BacktestResult, column: str) -> float:
    return float(result.equity[column].iloc[-1]) if len(result.equity) else 0.0


def performance(result: BacktestResult) -> dict[str, Any]:
    """The strategy figures of one result (the same keys for the strategy and its baselines)."""
    trades, returns, days = result.trades, daily_returns(result), span_days(result)
    return {
        "final_equity_usd": final_equity(result),
        "total_return": total_return(result),
        "cagr": cagr(result),
        "sharpe": sharpe(returns),
        "sortino": sortino(returns),
        "max_drawdown": max_drawdown(result),
        "calmar": calmar(result),
        "trades": len(trades),
        "win_rate": win_rate(trades),
        "profit_factor": profit_factor(trades),
        "expectancy_bps": expectancy_bps(trades),
        "exposure": exposure(result),
        "turnover": traded_notional(trades) / result.initial_equity_usd,
        "fees_usd": _cumulative(result, "fees_usd"),
        "funding_usd": _cumulative(result, "funding_usd"),
        "trades_per_day": len(trades) / days if days > 0 else math.nan,
        "days": days,
    }


# --- decisions ---


def _split_reasons(text: object) -> list[str]:
    if not isinstance(text, str):
        return []
    return [r.strip() for r in text.split(",") if r.strip()]


def holds_by_reason(decisions: pd.DataFrame) -> dict[str, int]:
    """How many HOLD decisions named each reason (a decision may name several)."""
    holds = decisions.loc[decisions["action"].astype(str) == HOLD, "reasons"]
    counts = Counter(r for text in holds for r in _split_reasons(text))
    return dict(sorted(counts.items()))


def refusals_by_reason(decisions: pd.DataFrame) -> dict[str, int]:
    """How many entries the risk manager refused for each reason (``refused:<reasons>``)."""
    counts: Counter[str] = Counter()
    for text in decisions["risk"]:
        if isinstance(text, str) and text.startswith("refused:"):
            counts.update(_split_reasons(text[len("refused:") :]))
    return dict(sorted(counts.items()))


def _day_pairs(pos: npt.NDArray[np.bool_], p: F64, day: npt.NDArray[np.intp], n_days: int) -> F64:
    """``C[d, e]``: pairs (positive of day ``d``, negative of day ``e``) with the positive ranked
    higher, ties counted half.  Rows are sorted by ``p`` once; a positive's tie group is the run
    ``[lo, hi)`` of sorted rows equal to it, so for day ``e`` the negatives below it are those at
    sorted positions before ``lo`` and its ties those in ``[lo, hi)`` (both a binary search over
    day ``e``'s few negatives, with the positives' bounds already ascending)."""
    order = np.argsort(p, kind="mergesort")
    ps, pos_s, day_s = p[order], pos[order], day[order]
    lo = np.searchsorted(ps, ps[pos_s], "left")
    hi = np.searchsorted(ps, ps[pos_s], "right")
    tied = bool(np.any(hi - lo > 1))  # some positive shares its probability with another row
    pos_day = day_s[pos_s]
    neg_at = np.flatnonzero(~pos_s)
    neg_day = day_s[neg_at]
    by_day = np.argsort(neg_day, kind="mergesort")
    bounds = np.searchsorted(neg_day[by_day], np.arange(n_days + 1))
    pairs = np.zeros((n_days, n_days))
    for e in range(n_days):
        at = neg_at[by_day[bounds[e] : bounds[e + 1]]]  # sorted positions of day e's negatives, ascending
        if len(at):
            below = np.searchsorted(at, lo, "left").astype(np.float64)
            if tied:
                below += 0.5 * (np.searchsorted(at, hi, "left") - below)
            pairs[:, e] = np.bincount(pos_day, weights=below, minlength=n_days)
    return pairs


def day_pair_auc_interval(
    y: npt.ArrayLike,
    p: npt.ArrayLike,
    ts: npt.ArrayLike,
    n_boot: int = N_BOOT,
    seed: int = BOOT_SEED,
    level: float = 0.95,
) -> tuple[float, float]:
    """The training evaluation's day-block bootstrap AUC interval (same resamples from the same
    seed, the same interval), computed in time that does not grow with rows per resample.

    A resample weights every row of day ``d`` by how often ``d`` was drawn, ``w_d``; so the weighted
    Mann-Whitney numerator is ``w' C w``, where ``C[d, e]`` counts the (positive of day ``d``,
    negative of day ``e``) pairs ranked right (ties half), built once.  A year of 5m decisions
    (105k rows, 1000 resamples) took 1.9 s against 25 s for a pass over the rows per resample.
    """
    yy, pp = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    _, day = np.unique(np.asarray(ts, dtype=np.int64) // DAY_MS, return_inverse=True)
    n_days = int(day.max()) + 1 if len(day) else 0
    if n_days < 2:
        return math.nan, math.nan
    pos = yy > 0.5
    pairs = _day_pairs(pos, pp, day, n_days)
    positives = np.bincount(day, weights=pos.astype(np.float64), minlength=n_days)
    negatives = np.bincount(day, weights=(~pos).astype(np.float64), minlength=n_days)
    rng = np.random.default_rng(seed)
    w = np.empty((n_boot, n_days))
    for i in range(n_boot):  # drawn one resample at a time, as the training evaluation draws them
        w[i] = np.bincount(rng.integers(0, n_days, n_days), minlength=n_days)
    with np.errstate(invalid="ignore", divide="ignore"):
        values = ((w @ pairs) * w).sum(axis=1) / ((w @ positives) * (w @ negatives))
    values = values[np.isfinite(values)]
    if not len(values):
        return math.nan, math.nan
    tail = (1.0 - level) / 2.0
    return float(np.quantile(values, tail)), float(np.quantile(values, 1.0 - tail))


def decision_quality(result: BacktestResult, n_boot: int = N_BOOT) -> dict[str, ProbabilityReport]:
    """The ensemble's and each model's probabilities scored against the labelled outcomes."""
    d = result.decisions
    outcome = d["outcome"].to_numpy(dtype=np.float64)
    labelled = np.isfinite(outcome)
    base_rate = float(outcome[labelled].mean()) if labelled.any() else math.nan
    columns = {ENSEMBLE: "probability"} | {m: MODEL_PREFIX + m for m in sorted(result.model_ids())}
    out: dict[str, ProbabilityReport] = {}
    for name, column in columns.items():
        p = d[column].to_numpy(dtype=np.float64)
        rows = labelled & np.isfinite(p)
        if rows.any():
            y, ts = outcome[rows], d["ts"].to_numpy(dtype=np.int64)[rows]
            report = evaluate(name, y, p[rows], ts, base_rate, n_boot=0)  # the interval: below
            lo, hi = day_pair_auc_interval(y, p[rows], ts, n_boot, BOOT_SEED)
            out[name] = replace(report, auc_lo=lo, auc_hi=hi)
    return out


# --- baselines from the candles ---


def _close_ms(result: BacktestResult) -> npt.NDArray[np.int64]:
    open_time = result.candles["open_time"].to_numpy(dtype=np.int64)
    return open_time + interval_ms(result.interval) - 1


def _baseline(
    result: BacktestResult, name: str, equity: pd.DataFrame, trades: pd.DataFrame
) -> BacktestResult:
    return BacktestResult(
        symbol=result.symbol,
        interval=result.interval,
        start_ms=result.start_ms,
        end_ms=result.end_ms,
        initial_equity_usd=result.initial_equity_usd,
        costs=result.costs,
        candles=result.candles,
        equity=equity,
        trades=trades,
        decisions=result.decisions.iloc[0:0],
        strategy=name,
    )


def flat(result: BacktestResult) -> BacktestResult:
    """Never trades: equity stays the initial equity."""
    ts = _close_ms(result)
    zeros = np.zeros(len(ts))
    equity = pd.DataFrame(
        {
            "ts": ts,
            "equity_usd": np.full(len(ts), result.initial_equity_usd),
            "position_qty": zeros,
            "position_notional_usd": zeros,
            "fees_usd": zeros,
            "funding_usd": zeros,
        }
    )
    return _baseline(result, "flat", equity, result.trades.iloc[0:0])


def _funding_paid(result: BacktestResult, qty: float) -> npt.NDArray[np.float64]:
    """The funding a long of ``qty`` held over the whole span has paid by each candle's close
    (cumulative, positive = paid): at each of the venue's settlements (:attr:`BacktestResult.funding`),
    ``qty`` times the price then (the close of the candle ending at it) times the rate."""
    ts = _close_ms(result)
    paid = np.zeros(len(ts))
    funding = result.funding
    if funding is None or funding.empty or not len(ts):
        return paid
    times = funding["funding_ms"].to_numpy(dtype=np.int64)
    rates = funding["rate"].to_numpy(dtype=np.float64)
    close = result.candles["close"].to_numpy(dtype=np.float64)
    # the price at each settlement: the last close before it (a candle closes 1 ms before the next opens)
    at = np.clip(np.searchsorted(ts, times - 1, side="right") - 1, 0, len(ts) - 1)
    payments = qty * close[at] * rates
    # paid from the first close after the settlement on
    first = np.searchsorted(ts, times, side="left")
    np.add.at(paid, first[first < len(ts)], payments[first < len(ts)])
    return np.cumsum(paid)


def buy_and_hold(result: BacktestResult) -> BacktestResult:
    """The initial equity long at 1x from the first open to the last close, one taker round trip,
    paying the venue's funding in between."""
    candles = result.candles
    if candles.empty:
        return _baseline(result, "buy_and_hold", flat(result).equity, result.trades.iloc[0:0])
    fee = result.costs.taker_fee_bps / 1e4
    slip = result.costs.slippage_bps / 1e4
    close = candles["close"].to_numpy(dtype=np.float64)
    entry = float(candles["open"].iloc[0]) * (1.0 + slip)
    exit_ = float(close[-1]) * (1.0 - slip)
    qty = result.initial_equity_usd / entry
    entry_fee = qty * entry * fee
    exit_fee = qty * exit_ * fee
    funding = _funding_paid(result, qty)
    marked = result.initial_equity_usd - entry_fee - funding + qty * (close - entry)
    fees = np.full(len(close), entry_fee)
    marked[-1] = result.initial_equity_usd - entry_fee - exit_fee - funding[-1] + qty * (exit_ - entry)
    fees[-1] += exit_fee
    ts = _close_ms(result)
    equity = pd.DataFrame(
        {
            "ts": ts,
            "equity_usd": marked,
            "position_qty": np.r_[np.full(len(close) - 1, qty), 0.0],
            "position_notional_usd": np.r_[qty * close[:-1], 0.0],
            "fees_usd": fees,
            "funding_usd": funding,
        }
    )
    gross = qty * (exit_ - entry)
    pnl = gross - entry_fee - exit_fee - float(funding[-1])
    trade = {
        "trade_id": "buy_and_hold",
        "symbol": result.symbol,
        "side": "LONG",
        "quantity": qty,
        "entry_ms": int(candles["open_time"].iloc[0]),
        "entry_price": entry,
        "exit_ms": int(ts[-1]),
        "exit_price": exit_,
        "exit_reason": "end",
        "gross_pnl_usd": gross,
        "fees_usd": entry_fee + exit_fee,
        "funding_usd": float(funding[-1]),
        "pnl_usd": pnl,
        "pnl_bps": pnl / (qty * entry) * 1e4,
        "entry_style": "taker",
        "model_version": "",
    }
    return _baseline(result, "buy_and_hold", equity, pd.DataFrame([trade]))


def monthly_returns(result: BacktestResult) -> pd.Series:
    """Return of each calendar month (UTC, index ``YYYY-MM``) from month-end equity."""
    equity = result.equity
    if equity.empty:
        return pd.Series(dtype=np.float64)
    month = equity["ts"].to_numpy(dtype=np.int64).astype("datetime64[ms]").astype("datetime64[M]")
    closes = pd.Series(equity["equity_usd"].to_numpy(dtype=np.float64)).groupby(month).last()
    closes.index = [str(m) for m in closes.index.to_numpy().astype("datetime64[M]")]
    previous = closes.shift(1)
    previous.iloc[0] = result.initial_equity_usd
    return (closes / previous - 1.0).astype(np.float64)


def data_quality(result: BacktestResult, shown: int = 20) -> dict[str, Any]:
    """The span's candles checked (:func:`xylen.data.quality.check_candles`): candles missing in gaps,
    irregular open times, OHLC nonsense.  The run goes on over them (its features and outcomes run
    across a gap), so the report says how many there were; ``lines``: the first ``shown`` issues."""
    report = check_candles(normalize_candles(result.candles, result.interval), result.interval)
    return {
        "issues": len(report.issues),
        "missing_candles": report.missing_candles,
        "gaps": len(report.gaps),
        "lines": report.lines()[:shown],
    }


def open_at_end(result: BacktestResult) -> dict[str, Any] | None:
    """The position still open at the span's end (its side, quantity and notional at the last close),
    or None: its unrealised PnL is in the equity and the return, while the trades hold only closed
    round trips (as backtesting.py leaves a trade open at the end unless told to close it)."""
    if result.equity.empty:
        return None
    last = result.equity.iloc[-1]
    qty = float(last["position_qty"])
    if qty == 0.0:
        return None
    return {
        "symbol": result.symbol,
        "side": "LONG" if qty > 0 else "SHORT",
        "quantity": abs(qty),
        "notional_usd": abs(float(last["position_notional_usd"])),
    }


def summarize(
    result: BacktestResult, baselines: dict[str, BacktestResult] | None = None, n_boot: int = N_BOOT
) -> dict[str, Any]:
    """Every figure of the report: the strategy's, its baselines' (buy & hold and flat always, plus
    any given, e.g. a reference strategy), decision quality, holds and refusals by reason."""
    result.check()
    others = {"buy_and_hold": buy_and_hold(result), "flat": flat(result)} | dict(baselines or {})
    quality = decision_quality(result, n_boot)
    return {
        "symbol": result.symbol,
        "interval": result.interval,
        "strategy": result.strategy,
        "start_ms": result.start_ms,
        "end_ms": result.end_ms,
        "initial_equity_usd": result.initial_equity_usd,
        "costs": {
            "maker_fee_bps": result.costs.maker_fee_bps,
            "taker_fee_bps": result.costs.taker_fee_bps,
            "slippage_bps": result.costs.slippage_bps,
            "entry": result.costs.entry,
            "latency_ms": result.costs.latency_ms,
        },
        "candles": len(result.candles),
        "data_quality": data_quality(result),
        "decisions": len(result.decisions),
        "figures": performance(result),
        "open_at_end": open_at_end(result),
        "baselines": {name: performance(other) for name, other in sorted(others.items())},
        "decision_quality": {name: report.to_dict() for name, report in quality.items()},
        "holds_by_reason": holds_by_reason(result.decisions),
        "refusals_by_reason": refusals_by_reason(result.decisions),
        "trades_by_model_version": by_model_version(result.trades),
        "stage_us": dict(sorted(result.stage_us.items())),
        "meta": result.meta,
    }
