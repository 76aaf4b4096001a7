"""The backtest report: ``summary.json``, the trade and decision files, the PNG plots and one
self-contained ``report.html``, plus the terminal table.

``write_report`` writes into ``DIR``:

* ``summary.json``: every figure (:func:`backtest.metrics.summarize`), keys sorted, floats
  rounded to 10 significant digits, NaN and infinity as ``null``, nothing from the run's own
  clock (the run's elapsed time stays in the page; stage timings are there only when the engine
  was asked to time its stages, a benchmark), so the same inputs give the same bytes;
* ``trades.parquet`` and ``trades.csv`` (the closed trades), ``decisions.parquet`` (every
  decision with each model's probability);
* the PNG plots (:mod:`backtest.plots`), and ``report.html`` with the same PNGs embedded as
  ``data:`` URIs, so the page opens from disk or as a mail attachment alone (it links
  ``backtest.log`` when the command wrote one beside it).
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import numpy as np
from rich.console import Console
from rich.table import Table

from backtest import plots
from backtest.metrics import ENSEMBLE, buy_and_hold, flat, summarize
from backtest.result import BacktestResult
from model_server.training.evaluation import N_BOOT

SIGNIFICANT: Final = 10
SUMMARY_JSON: Final = "summary.json"
REPORT_HTML: Final = "report.html"
TRADES_PARQUET: Final = "trades.parquet"
TRADES_CSV: Final = "trades.csv"
DECISIONS_PARQUET: Final = "decisions.parquet"
LOG: Final = "backtest.log"  # the runs' log, when `xylen backtest` wrote one (backtest.runlog)
RUN_CLOCK: Final[tuple[str, ...]] = ("elapsed_s", "candles_per_s")
"""``meta`` keys the engine measures on the run's own clock: shown in ``report.html``, kept out of
``summary.json`` so that the same inputs give the same bytes."""


# --- summary.json ---


def _plain(value: Any) -> Any:
    """``value`` as JSON-ready data: fixed float precision, non-finite floats as None."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        x = float(value)
        return float(f"{x:.{SIGNIFICANT}g}") if math.isfinite(x) else None
    if value is None or isinstance(value, str):
        return value
    return str(value)


def summary_json(summary: Mapping[str, Any]) -> str:
    """The one serialisation of a summary (sorted keys, two-space indent, final newline)."""
    return json.dumps(_plain(summary), sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


# --- display ---

_Fmt = Callable[[Any], str]


def _num(fmt: str, scale: float = 1.0, suffix: str = "") -> _Fmt:
    def show(v: Any) -> str:
        return "–" if v is None else f"{v * scale:{fmt}}{suffix}"

    return show


PCT: Final = _num(",.2f", 100.0, " %")
RATIO: Final = _num(".2f")
USD: Final = _num(",.2f")
BPS: Final = _num(",.1f")
COUNT: Final = _num(",.0f")
FIGURES: Final[tuple[tuple[str, str, _Fmt], ...]] = (
    ("total_return", "total return", PCT),
    ("cagr", "CAGR", PCT),
    ("sharpe", "Sharpe", RATIO),
    ("sortino", "Sortino", RATIO),
    ("max_drawdown", "max drawdown", PCT),
    ("calmar", "Calmar", RATIO),
    ("trades", "trades", COUNT),
    ("win_rate", "win rate", PCT),
    ("profit_factor", "profit factor", RATIO),
    ("expectancy_bps", "expectancy (bps)", BPS),
    ("exposure", "exposure", PCT),
    ("turnover", "turnover (x equity)", RATIO),
    ("fees_usd", "fees (USDT)", USD),
    ("funding_usd", "funding (USDT)", USD),
    ("trades_per_day", "trades per day", RATIO),
    ("final_equity_usd", "final equity (USDT)", USD),
)
QUALITY: Final[tuple[tuple[str, str, _Fmt], ...]] = (
    ("n", "labelled", COUNT),
    ("auc", "AUC", _num(".4f")),
    ("auc_lo", "AUC 2.5 %", _num(".4f")),
    ("auc_hi", "AUC 97.5 %", _num(".4f")),
    ("log_loss", "log-loss", _num(".5f")),
    ("log_loss_constant", "log-loss constant", _num(".5f")),
    ("brier", "Brier", _num(".5f")),
    ("brier_constant", "Brier constant", _num(".5f")),
    ("ece", "ECE (15 bins)", _num(".4f")),
)


def _columns(summary: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(name, figures) of the strategy, then its baselines."""
    return [(str(summary["strategy"]), summary["figures"]), *summary["baselines"].items()]


def _quality_columns(summary: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    quality = summary["decision_quality"]
    names = ([ENSEMBLE] if ENSEMBLE in quality else []) + [n for n in quality if n != ENSEMBLE]
    return [(n, quality[n]) for n in names]


def print_summary(summary: Mapping[str, Any], console: Console | None = None) -> None:
    """The summary as rich tables: figures beside the baselines, decision quality, holds."""
    console = console or Console()
    data = _plain(summary)
    columns = _columns(data)
    figures = Table(
        title=f"{data['symbol']} {data['interval']} backtest",
        title_style="bold red",
        caption="Sharpe, Sortino: daily returns, annualised with √365",
    )
    figures.add_column("figure")
    for name, _ in columns:
        figures.add_column(name, justify="right", style="bold" if name == data["strategy"] else None)
    for key, label, show in FIGURES:
        figures.add_row(label, *(show(values.get(key)) for _, values in columns))
    console.print(figures)
    issues = data.get("data_quality") or {}
    if issues.get("issues"):
        console.print(
            f"note: the span's candles have {issues['issues']} issue(s), {issues['missing_candles']:,}"
            f" candle(s) missing in {issues['gaps']} gap(s): the run went on over them (report.html"
            " lists them)"
        )
    still = open_note(data.get("open_at_end"))
    if still:
        console.print(f"note: {still}")
    quality = _quality_columns(data)
    if quality:
        table = Table(title="decision quality (vs the constant base rate)", title_style="bold red")
        table.add_column("figure")
        for name, _ in quality:
            table.add_column(name, justify="right")
        for key, label, show in QUALITY:
            table.add_row(label, *(show(values.get(key)) for _, values in quality))
        console.print(table)
    for key, title in (
        ("holds_by_reason", "holds by reason"),
        ("refusals_by_reason", "risk refusals by reason"),
    ):
        if data[key]:
            table = Table(title=title, title_style="bold red")
            table.add_column("reason")
            table.add_column("decisions", justify="right")
            for reason, count in data[key].items():
                table.add_row(reason, f"{count:,}")
            console.print(table)


# --- report.html ---

CSS: Final = """
body { background: #000; color: #e6e6e6; font: 15px/1.5 system-ui, sans-serif; margin: 0; }
header { background: linear-gradient(90deg, #5c0000, #8b0000); padding: 18px 28px; }
header h1 { margin: 0; font-size: 22px; color: #fff; }
header p { margin: 4px 0 0; color: #f0d0d0; }
main { padding: 8px 28px 40px; max-width: 1200px; }
h2 { color: #fff; border-bottom: 2px solid #8b0000; padding-bottom: 4px; margin-top: 32px; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { padding: 4px 12px; border-bottom: 1px solid #2a2a2a; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #5c0000; color: #fff; }
tbody tr:hover { background: #1a0000; }
td.ours { color: #ff8a80; font-weight: 600; }
figure { margin: 16px 0; }
figure img { max-width: 100%; border: 1px solid #5c0000; }
figcaption { color: #b0b0b0; font-size: 13px; }
a { color: #ff8a80; }
code { color: #ffb4ab; }
"""

PLOTS: Final = (
    (plots.EQUITY_PNG, "Equity and drawdown, buy & hold beside it"),
    (plots.MONTHLY_PNG, "Monthly returns"),
    (plots.PNL_PNG, "Trade PnL distribution"),
    (plots.EXPOSURE_PNG, "Exposure"),
    (plots.RELIABILITY_PNG, "The ensemble's reliability diagram"),
    (plots.TRADES_PNG, "Price with entries and exits"),
)


def _table(head: list[str], rows: list[list[str]], ours: int | None = None) -> str:
    e = html.escape
    out = ["<table><thead><tr>", *(f"<th>{e(h)}</th>" for h in head), "</tr></thead><tbody>"]
    for row in rows:
        cells = (
            f'<td class="ours">{e(c)}</td>' if i == ours else f"<td>{e(c)}</td>" for i, c in enumerate(row)
        )
        out += ["<tr>", *cells, "</tr>"]
    out.append("</tbody></table>")
    return "".join(out)


def _img(out_dir: Path, name: str, caption: str) -> str:
    data = base64.b64encode((out_dir / name).read_bytes()).decode("ascii")
    return (
        f'<figure><a href="{name}"><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}"></a>'
        f'<figcaption>{html.escape(caption)}: <a href="{name}">{name}</a></figcaption></figure>'
    )


def render_html(
    summary: Mapping[str, Any],
    out_dir: Path,
    run: Mapping[str, Any] | None = None,
    window: tuple[int, int] | None = None,
) -> str:
    """The report page for ``summary`` with the PNGs already written in ``out_dir``; ``run``: the
    run's own clock (elapsed seconds, candles per second), when known; ``window``: the span (ms
    ``[start, end)``) of the price plot with the entries and exits, named in its caption."""
    data = _plain(summary)
    clock = _plain(run or {})
    e = html.escape
    columns = _columns(data)
    costs = data["costs"]
    parts = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        f"<title>Xylen backtest {e(data['symbol'])} {e(data['interval'])}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<header><h1>Xylen backtest: {e(data['symbol'])} {e(data['interval'])}, {e(data['strategy'])}</h1>",
        f"<p>{_day(data['start_ms'])} to {_day(data['end_ms'])} · {data['candles']:,} candles · "
        f"{data['decisions']:,} decisions · initial equity {data['initial_equity_usd']:,.2f} USDT · "
        f"entry {e(str(costs['entry']))}, maker {costs['maker_fee_bps']} bps, "
        f"taker {costs['taker_fee_bps']} bps, "
        f"slippage {costs['slippage_bps']} bps, latency {costs['latency_ms']} ms</p>",
        _data_quality(data.get("data_quality")),
        f"<p>Note: {e(open_note(data.get('open_at_end')))}.</p>" if data.get("open_at_end") else "",
        _clock(clock),
        "</header><main>",
        "<h2>Figures</h2>",
        _table(
            ["figure", *(n for n, _ in columns)],
            [[label, *(show(v.get(key)) for _, v in columns)] for key, label, show in FIGURES],
            ours=1,
        ),
        "<p>Returns are daily (UTC); Sharpe and Sortino are annualised with √365. Buy &amp; hold pays one "
        "taker round trip with slippage; flat never trades.</p>",
    ]
    quality = _quality_columns(data)
    if quality:
        parts += [
            "<h2>Decision quality</h2>",
            _table(
                ["figure", *(n for n, _ in quality)],
                [[label, *(show(v.get(key)) for _, v in quality)] for key, label, show in QUALITY],
            ),
            "<p>Against the labelled outcomes; the constant is the span's up share. AUC interval: 95 % "
            "bootstrap over whole UTC days.</p>",
        ]
    for key, title in (
        ("holds_by_reason", "Holds by reason"),
        ("refusals_by_reason", "Risk refusals by reason"),
    ):
        if data[key]:
            parts += [
                f"<h2>{title}</h2>",
                _table(["reason", "decisions"], [[r, f"{n:,}"] for r, n in data[key].items()]),
            ]
    if data["trades_by_model_version"]:
        rows = [
            [
                version or "–",
                COUNT(v["trades"]),
                USD(v["pnl_usd"]),
                PCT(v["win_rate"]),
                BPS(v["expectancy_bps"]),
            ]
            for version, v in data["trades_by_model_version"].items()
        ]
        head = ["model versions", "trades", "net PnL (USDT)", "win rate", "expectancy (bps)"]
        parts += ["<h2>Trades by model version</h2>", _table(head, rows)]
    if data["stage_us"]:
        rows = [[stage, f"{us:,.2f}"] for stage, us in data["stage_us"].items()]
        parts += ["<h2>Stage timings</h2>", _table(["stage", "µs per candle"], rows)]
    parts.append("<h2>Plots</h2>")
    for name, caption in PLOTS:
        if name == plots.TRADES_PNG and window is not None:
            caption = f"{caption}, {_day(window[0])} to {_day(window[1])}"
        parts.append(_img(out_dir, name, caption))
    files = [SUMMARY_JSON, TRADES_PARQUET, TRADES_CSV, DECISIONS_PARQUET]
    files += [LOG] if (out_dir / LOG).is_file() else []  # written by `xylen backtest`
    parts.append("<h2>Files</h2><p>" + " · ".join(f'<a href="{f}">{f}</a>' for f in files) + "</p>")
    parts.append("</main></body></html>\n")
    return "".join(parts)


def _clock(run: Mapping[str, Any]) -> str:
    if run.get("elapsed_s") is None:
        return ""
    speed = f", {run['candles_per_s']:,.0f} candles/s" if run.get("candles_per_s") is not None else ""
    return f"<p>run in {run['elapsed_s']:,.1f} s{speed}</p>"


def open_note(position: Mapping[str, Any] | None) -> str:
    """What the summary says of a position still open at the end ("" when there is none)."""
    if not position:
        return ""
    return (
        f"a {position['side']} of {position['quantity']:g} {position['symbol']} (notional"
        f" {position['notional_usd']:,.2f} USDT) is still open at the end: its unrealised PnL is in the"
        " equity and the return, not in the trades"
    )


def _data_quality(quality: Mapping[str, Any] | None) -> str:
    """The span's data issues, when there are any (the run goes on over them)."""
    if not quality or not quality["issues"]:
        return ""
    items = "".join(f"<li>{html.escape(line)}</li>" for line in quality["lines"])
    more = quality["issues"] - len(quality["lines"])
    tail = f"<li>... and {more} more</li>" if more > 0 else ""
    return (
        f"<p>Data: {quality['issues']} issue(s) in the span's candles, {quality['missing_candles']:,}"
        f" candle(s) missing in {quality['gaps']} gap(s); the run went on over them.</p>"
        f"<ul>{items}{tail}</ul>"
    )


def _day(ms: int) -> str:
    return str(np.datetime64(int(ms), "ms").astype("datetime64[m]")).replace("T", " ") + " UTC"


# --- the whole report ---


def write_report(
    result: BacktestResult,
    out_dir: Path | str,
    baselines: dict[str, BacktestResult] | None = None,
    *,
    window: tuple[int, int] | None = None,
    n_boot: int = N_BOOT,
) -> dict[str, Any]:
    """Write the report of ``result`` into ``out_dir`` (created if missing) and return the summary
    that ``summary.json`` holds.  ``baselines`` adds results scored beside buy & hold and flat
    (e.g. a reference strategy); ``window`` (ms ``[start, end)``) picks the trades plot's span
    (default :func:`backtest.plots.default_window`)."""
    out = Path(out_dir)
    window = window if window is not None else plots.default_window(result)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = _plain(summarize(result, baselines, n_boot))
    summary["meta"] = {k: v for k, v in summary["meta"].items() if k not in RUN_CLOCK}
    run = {k: result.meta[k] for k in RUN_CLOCK if k in result.meta}
    drawn = {"buy_and_hold": buy_and_hold(result), "flat": flat(result)} | dict(baselines or {})
    plots.equity_drawdown(result, drawn, out / plots.EQUITY_PNG)
    plots.monthly(result, drawn["buy_and_hold"], out / plots.MONTHLY_PNG)
    plots.trade_pnl(result, out / plots.PNL_PNG)
    plots.exposure(result, out / plots.EXPOSURE_PNG)
    ensemble = summary["decision_quality"].get(ENSEMBLE, {})
    plots.reliability(ensemble.get("reliability", []), ENSEMBLE, out / plots.RELIABILITY_PNG)
    plots.trades_window(result, out / plots.TRADES_PNG, window)
    result.trades.to_parquet(out / TRADES_PARQUET, index=False)
    result.trades.to_csv(out / TRADES_CSV, index=False)
    result.decisions.to_parquet(out / DECISIONS_PARQUET, index=False)
    (out / SUMMARY_JSON).write_text(summary_json(summary), encoding="utf-8")
    (out / REPORT_HTML).write_text(render_html(summary, out, run, window), encoding="utf-8")
    return summary
