"""The report written from a realistic result: an EMA 9/21 long-only rule run over real BTCUSDT
5m candles (built here, so the report is tested apart from the engine), with two models' votes."""

from __future__ import annotations

import base64
import io
import json
import math
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
from playwright.sync_api import sync_playwright
from rich.console import Console

from backtest import plots
from backtest.report import (
    DECISIONS_PARQUET,
    REPORT_HTML,
    SUMMARY_JSON,
    TRADES_CSV,
    TRADES_PARQUET,
    print_summary,
    write_report,
)
from backtest.result import (
    DECISION_COLUMNS,
    EQUITY_COLUMNS,
    TRADE_COLUMNS,
    BacktestResult,
    Costs,
)
from xylen.paths import SHARED_BTC_5M

pytestmark = pytest.mark.slow  # each report draws six plots (a few seconds on a busy machine)

Written = tuple[Path, dict[str, Any]]
CHROMIUM = "/usr/bin/chromium"  # Debian's browser (make test installs it)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
STEP_MS = 300_000
HORIZON = 12
DAYS = 35  # over a month: the exposure plot shows daily means, and two calendar months
N_BOOT = 200  # the report's default is 1000; fewer keeps the test quick and changes no check


def _ema(x: npt.NDArray[np.float64], span: int) -> npt.NDArray[np.float64]:
    return pd.Series(x).ewm(span=span, adjust=False).mean().to_numpy()


def ema_cross_result(candles: pd.DataFrame, equity0: float = 10_000.0) -> BacktestResult:
    """Long when EMA 9 crosses above EMA 21, flat when it crosses back: decided at a candle's
    close, filled at the next open with taker fee and slippage."""
    costs = Costs(maker_fee_bps=2.0, taker_fee_bps=5.0, slippage_bps=1.0, entry="market")
    fee, slip = costs.taker_fee_bps / 1e4, costs.slippage_bps / 1e4
    ot = candles["open_time"].to_numpy(np.int64)
    o, c = candles["open"].to_numpy(), candles["close"].to_numpy()
    fast, slow = _ema(c, 9), _ema(c, 21)
    above = fast > slow
    cash, qty, entry, entry_fee, entry_ms = equity0, 0.0, 0.0, 0.0, 0
    fees = 0.0
    pending: str | None = None
    equity_rows: list[tuple[float, ...]] = []
    trades: list[tuple[object, ...]] = []
    for i in range(len(c)):
        if pending == "enter":
            entry = o[i] * (1 + slip)
            qty = cash / entry
            entry_fee, entry_ms = qty * entry * fee, int(ot[i])
            cash -= entry_fee
            fees += entry_fee
        elif pending == "exit":
            price = o[i] * (1 - slip)
            exit_fee = qty * price * fee
            gross = qty * (price - entry)
            pnl = gross - entry_fee - exit_fee
            cash += gross - exit_fee
            fees += exit_fee
            trades.append(
                (f"t{len(trades)}", "BTCUSDT", "LONG", qty, entry_ms, entry, int(ot[i]), price, "signal",
                 gross, entry_fee + exit_fee, 0.0, pnl, pnl / (qty * entry) * 1e4, "taker", "lgbm=1,river=1")
            )  # fmt: skip
            qty = 0.0
        pending = None
        if i > 0 and above[i] and not above[i - 1] and qty == 0:
            pending = "enter"
        elif i > 0 and not above[i] and above[i - 1] and qty > 0:
            pending = "exit"
        marked = cash + qty * (c[i] - entry)
        equity_rows.append((int(ot[i]) + STEP_MS - 1, marked, qty, qty * c[i], fees, 0.0))
    rng = np.random.default_rng(7)
    edge = (fast - slow) / c * 2_000.0
    probability = 1.0 / (1.0 + np.exp(-edge))
    future = np.r_[c[HORIZON:], np.full(HORIZON, np.nan)]
    outcome = np.where(np.isnan(future), np.nan, (future > c).astype(float))
    action = np.where(np.r_[False, above[1:] & ~above[:-1]], "LONG", "HOLD")
    hold_reasons = np.where(np.abs(edge) < 0.2, "LOW_EDGE", "HIGH_DISAGREEMENT,LOW_EDGE")
    reasons = np.where(action == "HOLD", hold_reasons, "")
    refused = np.where(np.arange(len(c)) % 7 == 0, "refused:MAX_EXPOSURE", "approved")
    risk = np.where(action == "LONG", refused, "")
    river = np.clip(probability + rng.normal(0, 0.08, len(c)), 0.01, 0.99)
    river[::10] = np.nan  # a model that sometimes does not vote
    decisions = pd.DataFrame(
        {
            "ts": ot + STEP_MS - 1,
            "symbol": "BTCUSDT",
            "action": action,
            "probability": probability,
            "confidence": np.abs(probability - 0.5) * 2,
            "expected_value_bps": edge * 10,
            "size_fraction": np.where(action == "LONG", 1.0, 0.0),
            "reasons": reasons,
            "risk": risk,
            "outcome": outcome,
            "model_version": "lgbm=1,river=1",
            "p:lgbm": np.clip(probability + rng.normal(0, 0.03, len(c)), 0.01, 0.99),
            "p:river": river,
        }
    )
    return BacktestResult(
        symbol="BTCUSDT",
        interval="5m",
        start_ms=int(ot[0]),
        end_ms=int(ot[-1]) + STEP_MS,
        initial_equity_usd=equity0,
        costs=costs,
        candles=candles.reset_index(drop=True),
        equity=pd.DataFrame(equity_rows, columns=list(EQUITY_COLUMNS)),
        trades=pd.DataFrame(trades, columns=list(TRADE_COLUMNS)),
        decisions=decisions[[*DECISION_COLUMNS, "p:lgbm", "p:river"]],
        strategy="ensemble",
        stage_us={"votes": 0.5, "ensemble": 3.25, "risk": 1.0},
        meta={"config": "config.yaml", "elapsed_s": 1.5, "candles_per_s": 6_720.0},
    )


@pytest.fixture(scope="module")
def real_candles(shared_data: Path) -> pd.DataFrame:
    frame = pd.read_feather(shared_data / SHARED_BTC_5M).tail(DAYS * 288)
    open_time = frame["date"].astype("int64").to_numpy() // 1_000_000  # ns -> ms
    prices = {k: frame[k].to_numpy() for k in ("open", "high", "low", "close", "volume")}
    return pd.DataFrame({"open_time": open_time, **prices})


@pytest.fixture(scope="module")
def result(real_candles: pd.DataFrame) -> BacktestResult:
    out = ema_cross_result(real_candles)
    out.check()
    return out


@pytest.fixture(scope="module")
def written(result: BacktestResult, tmp_path_factory: pytest.TempPathFactory) -> Written:
    out = tmp_path_factory.mktemp("report")
    reference = ema_cross_result(result.candles.iloc[len(result.candles) // 2 :].reset_index(drop=True))
    reference.strategy = "ema_cross_9_21"
    summary = write_report(result, out, {"ema_cross_9_21": reference}, n_boot=N_BOOT)
    return out, summary


PNGS = (
    plots.EQUITY_PNG,
    plots.MONTHLY_PNG,
    plots.PNL_PNG,
    plots.EXPOSURE_PNG,
    plots.RELIABILITY_PNG,
    plots.TRADES_PNG,
)


def test_every_file_is_written_and_the_html_embeds_every_png(written: Written) -> None:
    out, _ = written
    for name in (REPORT_HTML, SUMMARY_JSON, TRADES_PARQUET, TRADES_CSV, DECISIONS_PARQUET, *PNGS):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    page = (out / REPORT_HTML).read_text(encoding="utf-8")
    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(embedded) == len(PNGS)
    assert [base64.b64decode(data) for data in embedded] == [(out / name).read_bytes() for name in PNGS]
    for name in PNGS:
        assert f'href="{name}"' in page
    assert 'src="http' not in page and "<script" not in page  # nothing fetched: it opens from disk
    assert "#5c0000" in page and "#8b0000" in page and "background: #000" in page


def test_summary_json_is_the_returned_summary_and_holds_the_figures(
    written: Written, result: BacktestResult
) -> None:
    out, summary = written
    assert json.loads((out / SUMMARY_JSON).read_text(encoding="utf-8")) == summary
    figures = summary["figures"]
    assert figures["trades"] == len(result.trades) > 10
    assert figures["final_equity_usd"] == pytest.approx(result.equity["equity_usd"].iloc[-1])
    assert figures["fees_usd"] == pytest.approx(result.equity["fees_usd"].iloc[-1])
    assert figures["fees_usd"] >= result.trades["fees_usd"].sum()  # plus the open position's entry fee
    assert set(summary["baselines"]) == {"buy_and_hold", "flat", "ema_cross_9_21"}
    assert summary["baselines"]["flat"]["total_return"] == 0.0
    c = result.candles
    bh = c["close"].iloc[-1] * (1 - 1e-4) / (c["open"].iloc[0] * (1 + 1e-4)) - 1
    expected = bh - 5e-4 * (2 + bh)  # taker fee on the entry notional and on the exit notional
    assert summary["baselines"]["buy_and_hold"]["total_return"] == pytest.approx(expected, abs=1e-9)
    assert set(summary["decision_quality"]) == {"ensemble", "lgbm", "river"}
    river = summary["decision_quality"]["river"]
    assert river["n"] < summary["decision_quality"]["lgbm"]["n"]  # rows it did not vote are left out
    ens = summary["decision_quality"]["ensemble"]
    assert ens["auc_lo"] <= ens["auc"] <= ens["auc_hi"]
    assert ens["n"] == int(np.isfinite(result.decisions["outcome"]).sum())
    holds = (result.decisions["action"] == "HOLD").sum()
    assert summary["holds_by_reason"]["LOW_EDGE"] == holds
    assert 0 < summary["holds_by_reason"]["HIGH_DISAGREEMENT"] < holds
    assert summary["refusals_by_reason"]["MAX_EXPOSURE"] > 0
    assert summary["stage_us"] == {"ensemble": 3.25, "risk": 1.0, "votes": 0.5}
    assert summary["meta"] == {"config": "config.yaml"}  # the run's own clock stays out
    versions = summary["trades_by_model_version"]
    assert list(versions) == ["lgbm=1,river=1"] and versions["lgbm=1,river=1"]["trades"] == len(result.trades)
    page = (out / REPORT_HTML).read_text(encoding="utf-8")
    assert "Trades by model version" in page and "lgbm=1,river=1" in page and "Stage timings" in page


def test_trade_and_decision_files_round_trip(written: Written, result: BacktestResult) -> None:
    out, _ = written
    pd.testing.assert_frame_equal(pd.read_parquet(out / TRADES_PARQUET), result.trades)
    pd.testing.assert_frame_equal(pd.read_parquet(out / DECISIONS_PARQUET), result.decisions)
    csv = pd.read_csv(out / TRADES_CSV)
    assert list(csv.columns) == list(TRADE_COLUMNS)
    np.testing.assert_allclose(csv["pnl_usd"], result.trades["pnl_usd"])


def test_writing_twice_gives_byte_identical_summary_and_plots(
    written: Written, result: BacktestResult, tmp_path: Path
) -> None:
    out, _ = written
    reference = ema_cross_result(result.candles.iloc[len(result.candles) // 2 :].reset_index(drop=True))
    reference.strategy = "ema_cross_9_21"
    again = replace(result, meta=result.meta | {"elapsed_s": 2.25, "candles_per_s": 4_480.0})  # a slower run
    write_report(again, tmp_path, {"ema_cross_9_21": reference}, n_boot=N_BOOT)
    for name in (SUMMARY_JSON, *PNGS):
        assert (tmp_path / name).read_bytes() == (out / name).read_bytes(), name
    first, second = ((d / REPORT_HTML).read_text(encoding="utf-8") for d in (out, tmp_path))
    assert "run in 1.5 s, 6,720 candles/s" in first and "run in 2.2 s, 4,480 candles/s" in second
    assert (
        first.replace("run in 1.5 s, 6,720", "run in 2.2 s, 4,480") == second
    )  # only the run's clock differs


def test_print_summary_shows_the_figures_beside_the_baselines(written: Written) -> None:
    _, summary = written
    buffer = io.StringIO()
    print_summary(summary, Console(file=buffer, width=200, color_system=None))
    text = buffer.getvalue()
    words = ("total return", "Sharpe", "buy_and_hold", "flat", "ema_cross_9_21", "AUC", "LOW_EDGE", "river")
    for word in words:
        assert word in text
    assert f"{summary['figures']['trades']:,}" in text


def test_a_run_without_trades_or_labels_still_reports(result: BacktestResult, tmp_path: Path) -> None:
    quiet = BacktestResult(
        symbol=result.symbol,
        interval=result.interval,
        start_ms=result.start_ms,
        end_ms=result.end_ms,
        initial_equity_usd=result.initial_equity_usd,
        costs=result.costs,
        candles=result.candles,
        equity=result.equity.assign(equity_usd=result.initial_equity_usd, position_qty=0.0, fees_usd=0.0),
        trades=result.trades.iloc[0:0],
        decisions=result.decisions.assign(outcome=math.nan, action="HOLD"),
    )
    summary = write_report(quiet, tmp_path, n_boot=N_BOOT)
    assert summary["figures"]["trades"] == 0
    assert summary["figures"]["win_rate"] is None and summary["figures"]["sharpe"] is None
    assert summary["decision_quality"] == {}
    assert set(summary["refusals_by_reason"]) == {"MAX_EXPOSURE"}
    for name in (REPORT_HTML, SUMMARY_JSON, TRADES_CSV, *PNGS):
        assert (tmp_path / name).is_file(), name


def test_plots_of_a_short_span_show_single_candles(real_candles: pd.DataFrame, tmp_path: Path) -> None:
    short = ema_cross_result(real_candles.tail(3 * 288).reset_index(drop=True))
    start, end = plots.default_window(short)
    assert end - start <= 3 * 86_400_000 and start <= int(short.trades["entry_ms"].iloc[-1]) < end
    for draw, name in ((plots.exposure, plots.EXPOSURE_PNG), (plots.trades_window, plots.TRADES_PNG)):
        path = draw(short, tmp_path / name)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_page_opens_from_disk_in_a_browser_with_every_plot_drawn(written: Written) -> None:
    out, _ = written
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"Debian's Chromium is missing at {CHROMIUM} (apt-get install chromium)")
    fetched: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            page.on("request", lambda request: fetched.append(request.url))
            page.goto((out / REPORT_HTML).as_uri())
            widths = page.eval_on_selector_all(
                "img", "images => images.map(i => i.complete ? i.naturalWidth : 0)"
            )
            background = page.evaluate("getComputedStyle(document.body).backgroundColor")
            headings = page.eval_on_selector_all("h2", "hs => hs.map(h => h.textContent)")
        finally:
            browser.close()
    assert len(widths) == len(PNGS) and all(w > 0 for w in widths)
    assert background == "rgb(0, 0, 0)"
    assert {"Figures", "Decision quality", "Holds by reason", "Plots"} <= set(headings)
    assert [u for u in fetched if not u.startswith(("file:", "data:"))] == []  # nothing from a network
