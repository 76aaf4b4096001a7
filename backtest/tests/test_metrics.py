"""The report's formulas on small hand-computed cases, and decision quality against scikit-learn."""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

from backtest import metrics
from backtest.report import print_summary, summary_json, write_report
from backtest.result import DECISION_COLUMNS, EQUITY_COLUMNS, TRADE_COLUMNS, BacktestResult, Costs
from model_server.training.evaluation import day_block_auc_interval

DAY = 86_400_000
T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC
COSTS = Costs(maker_fee_bps=2.0, taker_fee_bps=5.0, slippage_bps=1.0, entry="market")


def _result(
    equity: list[float],
    qty: list[float] | None = None,
    trades: list[dict[str, object]] | None = None,
    decisions: pd.DataFrame | None = None,
    interval: str = "1d",
    step: int = DAY,
    initial: float = 100.0,
) -> BacktestResult:
    n = len(equity)
    open_time = T0 + step * np.arange(n, dtype=np.int64)
    closes = np.asarray(equity, dtype=np.float64)
    candles = pd.DataFrame(
        {
            "open_time": open_time,
            "open": closes,
            "high": closes,
            "low": closes,
            "close": closes,
            "volume": 1.0,
        }
    )
    q = np.zeros(n) if qty is None else np.asarray(qty, dtype=np.float64)
    eq = pd.DataFrame(
        {
            "ts": open_time + step - 1,
            "equity_usd": closes,
            "position_qty": q,
            "position_notional_usd": q * closes,
            "fees_usd": np.linspace(0.0, 1.5, n),
            "funding_usd": np.linspace(0.0, -0.25, n),
        },
        columns=list(EQUITY_COLUMNS),
    )
    if decisions is None:
        decisions = pd.DataFrame({c: [] for c in DECISION_COLUMNS})
    return BacktestResult(
        symbol="BTCUSDT",
        interval=interval,
        start_ms=T0,
        end_ms=T0 + step * n,
        initial_equity_usd=initial,
        costs=COSTS,
        candles=candles,
        equity=eq,
        trades=pd.DataFrame(trades or [], columns=list(TRADE_COLUMNS)),
        decisions=decisions,
    )


def _trade(
    pnl: float, bps: float, qty: float = 1.0, entry: float = 100.0, exit_: float = 100.0
) -> dict[str, object]:
    return {
        "trade_id": "t",
        "symbol": "BTCUSDT",
        "side": "LONG",
        "quantity": qty,
        "entry_ms": T0,
        "entry_price": entry,
        "exit_ms": T0 + DAY,
        "exit_price": exit_,
        "exit_reason": "take_profit",
        "gross_pnl_usd": pnl,
        "fees_usd": 0.0,
        "funding_usd": 0.0,
        "pnl_usd": pnl,
        "pnl_bps": bps,
        "entry_style": "taker",
        "model_version": "m=1",
    }


def test_drawdown_sharpe_and_sortino_of_a_known_curve() -> None:
    result = _result([110.0, 88.0, 121.0, 108.9])
    returns = [0.1, -0.2, 0.375, -0.1]
    assert metrics.daily_returns(result).to_numpy() == pytest.approx(returns)
    assert metrics.max_drawdown(result) == pytest.approx(0.2)  # 110 -> 88
    assert metrics.drawdown(result).to_numpy() == pytest.approx([0.0, -0.2, 0.0, -0.1])
    sharpe = statistics.mean(returns) / statistics.stdev(returns) * math.sqrt(365)
    assert metrics.sharpe(metrics.daily_returns(result)) == pytest.approx(sharpe)
    downside = math.sqrt((0.2**2 + 0.1**2) / 4)
    assert metrics.sortino(metrics.daily_returns(result)) == pytest.approx(
        statistics.mean(returns) / downside * math.sqrt(365)
    )
    assert metrics.total_return(result) == pytest.approx(0.089)


def test_a_drawdown_from_the_first_candle_counts_the_initial_equity_as_the_peak() -> None:
    assert metrics.max_drawdown(_result([90.0, 95.0, 99.0])) == pytest.approx(0.1)
    assert metrics.max_drawdown(_result([100.0, 100.0])) == 0.0


def test_daily_returns_take_each_utc_day_last_equity_from_5m_candles() -> None:
    # two days of 5m candles: day 1 ends at 105, day 2 ends at 94.5
    equity = [100.0] * 287 + [105.0] + [99.0] * 287 + [94.5]
    result = _result(equity, interval="5m", step=300_000)
    assert metrics.daily_returns(result).to_numpy() == pytest.approx([0.05, -0.1])
    assert metrics.span_days(result) == pytest.approx(2.0)


def test_cagr_and_calmar() -> None:
    one_year = _result([100.0] * 364 + [121.0])
    assert metrics.cagr(one_year) == pytest.approx(0.21)
    two_years = _result([100.0] * 729 + [121.0])
    assert metrics.cagr(two_years) == pytest.approx(0.10)
    dipped = _result([100.0] * 100 + [80.0] + [100.0] * 263 + [121.0])
    assert metrics.calmar(dipped) == pytest.approx(0.21 / 0.2)
    assert metrics.cagr(_result([0.0])) == -1.0


def test_trade_figures() -> None:
    trades = [
        _trade(10.0, 10.0),
        _trade(-5.0, -5.0),
        _trade(20.0, 20.0, qty=2.0, entry=100.0, exit_=110.0),
        _trade(-5.0, -7.0),
    ]
    result = _result([100.0, 120.0], qty=[1.0, 0.0], trades=trades)
    fig = metrics.performance(result)
    assert fig["trades"] == 4
    assert fig["win_rate"] == 0.5
    assert fig["profit_factor"] == pytest.approx(30.0 / 10.0)
    assert fig["expectancy_bps"] == pytest.approx((10 - 5 + 20 - 7) / 4)
    assert fig["exposure"] == 0.5
    # three trades of 1 at 100 in and out, one of 2 at 100 in and 110 out: 600 + 420 over 100
    assert fig["turnover"] == pytest.approx(10.2)
    assert fig["trades_per_day"] == pytest.approx(2.0)
    assert fig["fees_usd"] == 1.5 and fig["funding_usd"] == -0.25  # the last cumulative values
    assert metrics.profit_factor(pd.DataFrame([_trade(1.0, 1.0)])) == math.inf


def test_no_trade_and_no_candle_do_not_crash() -> None:
    flat = _result([100.0] * 5)
    fig = metrics.performance(flat)
    assert fig["trades"] == 0 and math.isnan(fig["win_rate"]) and math.isnan(fig["profit_factor"])
    assert math.isnan(fig["sharpe"]) and math.isnan(fig["sortino"]) and fig["max_drawdown"] == 0.0
    empty = _result([])
    assert metrics.performance(empty)["total_return"] == 0.0
    assert metrics.buy_and_hold(empty).trades.empty
    summary = metrics.summarize(flat, n_boot=10)
    assert summary["decision_quality"] == {} and summary["holds_by_reason"] == {}
    text = summary_json(summary)
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text)["figures"]["win_rate"] is None


def test_buy_and_hold_pays_one_taker_round_trip_with_slippage() -> None:
    result = _result([100.0, 90.0, 120.0])
    result.candles.loc[0, "open"] = 95.0
    bh = metrics.buy_and_hold(result)
    entry, exit_ = 95.0 * 1.0001, 120.0 * 0.9999
    qty = 100.0 / entry
    fees = qty * entry * 5e-4 + qty * exit_ * 5e-4
    assert bh.trades["pnl_usd"].iloc[0] == pytest.approx(qty * (exit_ - entry) - fees)
    assert bh.equity["equity_usd"].iloc[-1] == pytest.approx(100.0 + qty * (exit_ - entry) - fees)
    assert bh.equity["equity_usd"].iloc[1] == pytest.approx(100.0 - qty * entry * 5e-4 + qty * (90.0 - entry))
    assert bh.equity["fees_usd"].iloc[-1] == pytest.approx(fees)
    assert list(bh.equity["position_qty"] != 0) == [True, True, False]
    assert metrics.performance(metrics.flat(result))["total_return"] == 0.0


def test_buy_and_hold_pays_the_venues_funding_at_each_settlement() -> None:
    hour = 3_600_000
    closes = [100.0 + k for k in range(24)]
    result = _result(closes, interval="1h", step=hour)
    result.funding = pd.DataFrame({"funding_ms": [T0 + 8 * hour, T0 + 16 * hour], "rate": [1e-4, -2e-4]})
    bh = metrics.buy_and_hold(result)
    qty = 100.0 / (100.0 * 1.0001)
    # the price at a settlement is the close of the candle ending at it; paid from the next close on
    first, second = qty * closes[7] * 1e-4, qty * closes[15] * -2e-4
    paid = bh.equity["funding_usd"].to_numpy()
    assert paid[:8] == pytest.approx([0.0] * 8)
    assert paid[8:16] == pytest.approx([first] * 8)
    assert paid[16:] == pytest.approx([first + second] * 8)
    without = dataclasses.replace(result, funding=None)
    gap = metrics.buy_and_hold(without).equity["equity_usd"] - bh.equity["equity_usd"]
    assert gap.to_numpy() == pytest.approx(paid)
    trade = bh.trades.iloc[0]
    assert trade["funding_usd"] == pytest.approx(first + second)
    net = trade["gross_pnl_usd"] - trade["fees_usd"] - trade["funding_usd"]
    assert trade["pnl_usd"] == pytest.approx(net)


def test_monthly_returns_chain_month_end_equity() -> None:
    result = _result([100.0] * 30 + [110.0] + [100.0] * 28 + [99.0])  # Jan ends 110, Feb ends 99
    assert metrics.monthly_returns(result).to_dict() == pytest.approx({"2024-01": 0.1, "2024-02": -0.1})


def test_holds_and_refusals_by_reason() -> None:
    decisions = pd.DataFrame(
        {
            "action": ["HOLD", "HOLD", "LONG", "SHORT", "HOLD"],
            "reasons": ["LOW_EDGE,NO_QUORUM", "LOW_EDGE", "", None, ""],
            "risk": ["", "", "refused:MAX_EXPOSURE,DAILY_LOSS", "approved", ""],
        }
    )
    assert metrics.holds_by_reason(decisions) == {"LOW_EDGE": 2, "NO_QUORUM": 1}
    assert metrics.refusals_by_reason(decisions) == {"DAILY_LOSS": 1, "MAX_EXPOSURE": 1}


def _decisions(n: int, days: int, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    truth = rng.uniform(0.2, 0.8, n)
    outcome = (rng.uniform(size=n) < truth).astype(float)
    outcome[-5:] = np.nan  # the span ended before these were labelled
    p_a = np.clip(truth + rng.normal(0, 0.1, n), 0.01, 0.99)
    p_b = rng.uniform(0.3, 0.7, n)
    p_b[::4] = np.nan  # did not vote
    return pd.DataFrame(
        {
            "ts": T0 + np.sort(rng.integers(0, days * DAY, n)),
            "symbol": "BTCUSDT",
            "action": "HOLD",
            "probability": np.clip(0.5 * (p_a + np.nan_to_num(p_b, nan=0.5)), 0.01, 0.99),
            "confidence": 0.0,
            "expected_value_bps": 0.0,
            "size_fraction": 0.0,
            "reasons": "LOW_EDGE",
            "risk": "",
            "outcome": outcome,
            "model_version": "a=1,b=1",
            "p:a": p_a,
            "p:b": p_b,
        }
    )


def test_decision_quality_matches_scikit_learn() -> None:
    d = _decisions(400, days=10)
    result = _result([100.0] * 10, decisions=d)
    quality = metrics.decision_quality(result, n_boot=200)
    assert list(quality) == ["ensemble", "a", "b"]
    labelled = d["outcome"].notna()
    base = float(d.loc[labelled, "outcome"].mean())
    for name, column in (("ensemble", "probability"), ("a", "p:a"), ("b", "p:b")):
        rows = labelled & d[column].notna()
        y, p = d.loc[rows, "outcome"].to_numpy(), d.loc[rows, column].to_numpy()
        q = quality[name]
        assert q.n == int(rows.sum())
        assert q.auc == pytest.approx(roc_auc_score(y, p))
        assert q.log_loss == pytest.approx(log_loss(y, p))
        assert q.brier == pytest.approx(brier_score_loss(y, p))
        assert q.base_rate == pytest.approx(base)
        assert q.log_loss_constant == pytest.approx(log_loss(y, np.full(len(y), base)))
        assert q.brier_constant == pytest.approx(brier_score_loss(y, np.full(len(y), base)))
        assert q.auc_lo < q.auc < q.auc_hi
        assert q.days == 10
    assert quality["a"].auc > 0.6 > quality["b"].auc  # informative model above noise
    again = metrics.decision_quality(result, n_boot=200)
    assert again["a"].auc_lo == quality["a"].auc_lo  # fixed bootstrap seed


def test_ece_over_fifteen_bins_by_hand() -> None:
    d = _decisions(4, days=1).assign(probability=[0.1, 0.1, 0.9, 0.9], outcome=[0.0, 1.0, 1.0, 1.0])
    quality = metrics.decision_quality(_result([100.0], decisions=d), n_boot=10)
    # bin of 0.1: |0.1 - 0.5| over 2 rows; bin of 0.9: |0.9 - 1| over 2 rows
    assert quality["ensemble"].ece == pytest.approx((0.4 * 2 + 0.1 * 2) / 4)
    assert math.isnan(quality["ensemble"].auc_lo)  # one day: no day-block interval


def test_the_day_pair_interval_is_the_training_evaluations_interval() -> None:
    rng = np.random.default_rng(11)
    n = 3_000
    ts = T0 + np.sort(rng.integers(0, 40 * DAY, n))
    y = (rng.uniform(size=n) < 0.45).astype(float)
    raw = np.clip(0.45 + 0.1 * (y - 0.45) + rng.normal(0, 0.15, n), 0, 1)
    for p, seed in ((raw, 0), (np.round(raw, 2), 5)):  # distinct probabilities, then many ties
        expected = day_block_auc_interval(y, p, ts, n_boot=300, seed=seed)
        assert metrics.day_pair_auc_interval(y, p, ts, n_boot=300, seed=seed) == pytest.approx(
            expected, abs=1e-12
        )
        assert expected[0] < expected[1]
    one_class = np.zeros(n)
    assert all(math.isnan(v) for v in metrics.day_pair_auc_interval(one_class, raw, ts, n_boot=50))


def test_trades_by_model_version() -> None:
    trades = pd.DataFrame([_trade(10.0, 10.0), _trade(-5.0, -5.0), _trade(4.0, 2.0)])
    trades["model_version"] = ["a=1,b=1", "a=1,b=1", "a=2,b=1"]
    assert metrics.by_model_version(trades) == {
        "a=1,b=1": {"trades": 2, "pnl_usd": 5.0, "win_rate": 0.5, "expectancy_bps": 2.5},
        "a=2,b=1": {"trades": 1, "pnl_usd": 4.0, "win_rate": 1.0, "expectancy_bps": 2.0},
    }
    assert metrics.by_model_version(trades.iloc[0:0]) == {}


def test_data_quality_counts_the_span_s_missing_candles() -> None:
    whole = _result([100.0 + k for k in range(10)])
    assert metrics.data_quality(whole) == {"issues": 0, "missing_candles": 0, "gaps": 0, "lines": []}
    holed = _result([100.0 + k for k in range(10)])
    holed.candles = holed.candles.drop(index=[3, 4, 7]).reset_index(drop=True)
    quality = metrics.data_quality(holed)
    assert (quality["issues"], quality["missing_candles"], quality["gaps"]) == (2, 3, 2)
    assert quality["lines"][0] == "gap: 2 missing candle(s) from 2024-01-04 00:00 to 2024-01-05 00:00 UTC"
    assert metrics.summarize(holed, n_boot=10)["data_quality"] == quality


def test_a_position_open_at_the_end_is_said_beside_the_figures(tmp_path: Path) -> None:
    result = _result([100.0, 101.0, 102.0], qty=[0.0, 0.5, -0.25])
    assert metrics.open_at_end(result) == {
        "symbol": "BTCUSDT", "side": "SHORT", "quantity": 0.25, "notional_usd": 25.5
    }  # fmt: skip
    assert metrics.open_at_end(_result([100.0, 101.0])) is None
    summary = metrics.summarize(result, n_boot=10)
    console = Console(record=True, width=300)
    print_summary(summary, console)
    assert (
        "note: a SHORT of 0.25 BTCUSDT (notional 25.50 USDT) is still open at the end: its unrealised PnL"
        " is in the equity and the return, not in the trades"
    ) in console.export_text()
    assert metrics.summarize(_result([100.0, 101.0]), n_boot=10)["open_at_end"] is None
    write_report(result, tmp_path)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<p>Note: a SHORT of 0.25 BTCUSDT (notional 25.50 USDT) is still open at the end" in page
