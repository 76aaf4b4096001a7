"""``xylen lookahead-analysis``: does any feature or decision change when the future is removed?

Runs :func:`backtest.lookahead.analyse` for one symbol over ``--from``..``--to``: the feature engine
(higher-timeframe features included, plus any ``--feature MODULE:FUNCTION`` under test) and the
backtest's decisions on the full data and on data cut at ``--cuts`` points, compared candle by
candle.  Prints what changed (feature or column, first time, largest difference) and writes the
JSON report to ``--report``; what the runs and the models' training log goes to a log file beside
the report (``<report>.log``, else ``<home>/lookahead/lookahead.log``).  Exit 0 when nothing
peeks, 1 when something does, 2 on bad usage.

The models voting are ``--models`` (model directories) or, by default, small LightGBM models
trained on the candles before ``--from`` (as ``xylen backtest`` does).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import math
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from xylen.cli.span_args import add_span_arguments, base_interval_ms
from xylen.errors import UsageError


def register(sub: Any) -> None:
    """Add the ``lookahead-analysis`` subcommand."""
    parser = sub.add_parser(
        "lookahead-analysis",
        help="check that no feature or decision changes when the future is removed",
        description="Recompute every feature and every backtest decision on data truncated at many cut "
        "points and report any that changes when the candles after the cut are removed. "
        "Exit 0 clean, 1 when something peeks, 2 on bad usage.",
    )
    add_span_arguments(parser, "2024-03-01", "2024-03-02")
    parser.add_argument("--cuts", type=int, default=20, help="cut points (default 20)")
    parser.add_argument("--report", type=Path, default=None, help="write the JSON report to this file")
    parser.add_argument(
        "--models", default=None, help="model directories, comma-separated (default: trained before --from)"
    )
    parser.add_argument(
        "--feature",
        action="append",
        default=[],
        metavar="MODULE:FUNCTION",
        help="an extra feature function under test (candle frame in, one value per row out); repeatable",
    )
    parser.add_argument(
        "--features-only", action="store_true", help="check the features only (no backtest runs: fast)"
    )
    parser.add_argument(
        "--tolerance", type=float, default=1e-9, help="largest absolute difference ignored (default 1e-9)"
    )
    parser.set_defaults(func=run)


def load_feature(spec: str) -> tuple[str, Callable[..., Any]]:
    """``MODULE:FUNCTION`` -> (``FUNCTION``, the function); exit 2 naming the flag otherwise."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"--feature {spec!r}: use MODULE:FUNCTION, e.g. mypkg.features:future_return")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"--feature {spec!r}: cannot import {module_name} ({exc})") from exc
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise UsageError(f"--feature {spec!r}: {module_name} has no function {attr}")
    return attr, fn


def run(args: argparse.Namespace) -> int:
    """Parse, analyse, print, write the report (module docstring)."""
    from backtest import settings
    from backtest.data import load_candles, load_funding_frame
    from backtest.runlog import RunLog
    from xylen.cli.backtest import interrupt_at_once, parse_day
    from xylen.paths import Home

    start = parse_day(args.start, "--from")
    end = parse_day(args.end, "--to")
    if start >= end:
        raise UsageError("--from must be before --to")
    if args.cuts < 1:
        raise UsageError(f"--cuts {args.cuts}: must be 1 or more")
    if not (math.isfinite(args.tolerance) and args.tolerance >= 0):
        raise UsageError(f"--tolerance {args.tolerance}: must be a number >= 0")
    extra = dict(load_feature(s) for s in args.feature)
    dirs = [Path(p.strip()) for p in args.models.split(",")] if args.models else []
    for d in dirs:
        if not d.is_dir():
            raise UsageError(f"--models: {d} is not a model directory")
    if args.report is not None and args.report.is_dir():
        raise UsageError(f"--report {args.report}: is a folder; give a file name, e.g. lookahead.json")
    config = settings.load(args.config, args.symbol or "BTCUSDT")
    symbol = args.symbol or config.market.symbols[0]
    config = settings.with_symbol(config, symbol)
    base_interval_ms(args.interval)
    candles, funding_dir = load_candles(symbol, args.interval, args.data)
    # the runs' records and the models' training go to a log file, stamped with market time: on the
    # terminal the order path's routine messages would bury the progress bar (backtest.runlog)
    if args.report is not None:
        log_path = args.report.with_suffix(".log")
    else:
        log_path = Home.resolve(args.home).root / "lookahead" / "lookahead.log"
    log = RunLog(log_path, args.log_level or "INFO")
    work = Path(tempfile.mkdtemp(prefix="xylen-lookahead-"))
    try:
        with log, interrupt_at_once():
            funding = load_funding_frame(funding_dir, symbol)
            status = _analyse(args, config, candles, funding, symbol, start, end, extra, dirs, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(log.summary())
    return status


def _analyse(
    args: argparse.Namespace,
    config: Any,
    candles: Any,
    funding: Any,
    symbol: str,
    start: int,
    end: int,
    extra: Mapping[str, Callable[..., Any]],
    dirs: list[Path],
    work: Path,
) -> int:
    from backtest import settings
    from backtest.lookahead import analyse
    from backtest.votes import TrainSettings, model_votes, train_dir

    if not args.features_only and not dirs:
        train = TrainSettings(horizon_minutes=config.trading.horizon_minutes, seeds=(42, 7, 1234))
        before_ms = start - train.horizon_minutes * 60_000
        before = candles[candles["open_time"] < before_ms].reset_index(drop=True)
        print(f"training {len(train.seeds)} small models on the candles before --from ...")
        dirs = [
            train_dir(before, symbol, work / f"m-{k}", train, seed, start, interval=args.interval)
            for k, seed in enumerate(train.seeds)
        ]
    ids = [f"la-{k}" for k in range(len(dirs))]
    if ids:
        config = settings.with_models(config, ids)

    def votes(history: Any) -> list[Any]:
        return [
            dataclasses.replace(v, model_id=m) for v, m in zip(model_votes(dirs, history), ids, strict=True)
        ]

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()
    ) as bar:
        task = bar.add_task("cut points (features, then decisions)", total=None)
        report = analyse(
            config,
            candles,
            symbol,
            start,
            end,
            votes,
            interval=args.interval,
            funding=funding,
            cuts=args.cuts,
            extra=extra,
            decisions=not args.features_only,
            tolerance=args.tolerance,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    _print(report)
    if args.report is not None:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(report.to_json(), encoding="utf-8")
        print(f"report: {args.report}")
    return 0 if report.clean else 1


def _print(report: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    checked = f"{len(report.features_checked)} features"
    if report.decision_columns_checked:
        checked += f", {report.decisions_checked} decisions ({len(report.decision_columns_checked)} columns)"
    console.print(f"{report.symbol} {report.interval}: {len(report.cuts_ms)} cut points, {checked} compared")
    if report.clean:
        console.print("clean: nothing changes when the future is removed")
        return
    table = Table(title="changes when the future is removed")
    for head in ("kind", "name", "first differs (UTC)", "max abs diff", "cuts", "full", "truncated"):
        table.add_column(head, overflow="fold")
    for f in report.findings:
        d = f.as_dict()
        table.add_row(
            f.kind,
            f.name,
            d["first_differs"],
            f"{f.max_abs_diff:.3g}",
            str(f.cuts),
            f.example[0],
            f.example[1],
        )
    console.print(table)
    if any(f.cut_rows_only for f in report.findings):
        names = ", ".join(f.name for f in report.findings if f.cut_rows_only)
        console.print(f"{names}: differ only at the cut candles, i.e. read exactly one candle ahead")
