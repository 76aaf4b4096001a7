"""``xylen backtest``: the coordinator's own pipeline over history, with a report.

Runs :mod:`backtest.engine` for the span ``--from``..``--to`` on one symbol: the strategy asked for
(the ensemble over the models, or the EMA 9/21 reference), then, for the ensemble, the EMA reference
with the same costs beside it; writes the report (:func:`backtest.report.write_report`) into
``--report DIR`` and prints its summary table.  Bad arguments or config: exit 2 with the reason;
Ctrl-C: exit 130 at once, the scratch folders removed (:func:`interrupt_at_once`).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from xylen.cli.span_args import add_span_arguments, base_interval_ms
from xylen.errors import UsageError

if TYPE_CHECKING:
    from backtest.runlog import RunLog

DAY = re.compile(r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2})?)?$")
DURATION = re.compile(r"^(\d+)([mhdw])$")
UNIT_MS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}


def register(sub: Any) -> None:
    """Add the ``backtest`` subcommand."""
    parser = sub.add_parser(
        "backtest",
        help="run the coordinator's pipeline over history and write a report",
        description="Replay history through the coordinator's own snapshot, votes, ensemble, risk, "
        "entries, order state machine and settlement, against the paper exchange's matching engine "
        "in-process, on an instant clock.",
    )
    add_span_arguments(parser, "2024-01-01", "2024-05-01")
    parser.add_argument("--report", type=Path, required=True, help="folder to write the report into")
    parser.add_argument(
        "--models", default=None, help="model directories, comma-separated (default: trained before --from)"
    )
    parser.add_argument("--strategy", choices=["ensemble", "ema_cross"], default="ensemble")
    parser.add_argument(
        "--fidelity",
        choices=["fast", "http"],
        default="fast",
        help="fast: models in-process, predicted ahead; http: the config's model servers",
    )
    parser.add_argument(
        "--walk-forward", action="store_true", help="retrain the models every --retrain-every"
    )
    parser.add_argument(
        "--retrain-every", default="30d", help="walk-forward window, e.g. 30d, 2w (default 30d)"
    )
    parser.add_argument("--no-skip", action="store_true", help="run the order stages on idle candles too")
    parser.add_argument(
        "--ema-quantity", default="0.01", help="the EMA reference's position size (default 0.01)"
    )
    parser.add_argument(
        "--plot-window",
        nargs=2,
        metavar=("FROM", "TO"),
        default=None,
        help="the span of the price plot with entries and exits (default: the last 7 days with trades)",
    )
    parser.set_defaults(func=run)


def parse_day(value: str, flag: str) -> int:
    """``YYYY-MM-DD[ HH:MM]`` (UTC) as ms; exit 2 naming the flag otherwise."""
    import pandas as pd

    if DAY.match(value.strip()) is None:
        raise UsageError(f"{flag} {value!r}: not a date (use YYYY-MM-DD or YYYY-MM-DD HH:MM, UTC)")
    try:
        ts = pd.Timestamp(value.strip())
        if ts.tzinfo is None:
            ts = ts.tz_localize("UTC")
        return int(ts.value // 1_000_000)
    except (ValueError, TypeError, OverflowError) as exc:
        raise UsageError(f"{flag} {value!r}: not a date (use YYYY-MM-DD or YYYY-MM-DD HH:MM, UTC)") from exc


def parse_duration(value: str, flag: str) -> int:
    """``30d``, ``12h``, ``2w`` as ms."""
    match = DURATION.match(value.strip())
    if match is None or int(match.group(1)) <= 0:
        raise UsageError(f"{flag} {value!r}: use a positive number with m, h, d or w, e.g. 30d")
    return int(match.group(1)) * UNIT_MS[match.group(2)]


def conflicting_vote_flags(args: argparse.Namespace) -> str | None:
    """Why the flags choosing the votes contradict each other, or None: each source of votes excludes
    the others, and the reference strategy takes none (a flag that would be ignored is refused)."""
    chosen = [
        flag
        for flag, given in (
            ("--models", bool(args.models)),
            ("--walk-forward", args.walk_forward),
            ("--fidelity http", args.fidelity == "http"),
        )
        if given
    ]
    if args.strategy == "ema_cross" and chosen:
        return f"{chosen[0]}: --strategy ema_cross takes no votes"
    if len(chosen) > 1:
        return f"{chosen[0]} and {chosen[1]} exclude each other (each is a source of the votes)"
    return None


def plot_window(values: list[str] | None, start: int, end: int) -> tuple[int, int] | None:
    """``--plot-window FROM TO`` as ms ``[from, to)``, within the span; None when not given."""
    if values is None:
        return None
    lo, hi = (parse_day(v, "--plot-window") for v in values)
    if lo >= hi:
        raise UsageError("--plot-window: FROM must be before TO")
    if hi <= start or lo >= end:
        raise UsageError("--plot-window: the window is outside the span --from..--to")
    return lo, hi


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextmanager
def interrupt_at_once() -> Iterator[None]:
    """Ctrl-C raises ``KeyboardInterrupt`` wherever the command is (training the models, the candle
    loop), so the ``finally`` blocks remove the run's scratch folders and the command exits 130 at
    once.  ``asyncio.run`` would turn it into a cancellation of its task instead, delivered only at an
    await that suspends, which model training never reaches."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def chosen_symbol(flag: str | None, symbols: list[str]) -> tuple[str, str | None]:
    """The symbol a run backtests (``--symbol``, else the config's first) and, when the config lists
    others that ``--symbol`` did not choose between, a note saying that they are left out: a run
    backtests one symbol on its own account, while a coordinator trading several shares its account,
    risk limits and ensemble between them."""
    if flag is not None:
        return flag, None
    if len(symbols) == 1:
        return symbols[0], None
    others = ", ".join(symbols[1:])
    return symbols[0], (
        f"note: the config trades {', '.join(symbols)}; this run backtests {symbols[0]} alone"
        f" (not {others}: one symbol per run, on its own account; --symbol picks another)"
    )


def run(args: argparse.Namespace) -> int:
    """Parse, compose, run, report (module docstring)."""
    from backtest import settings
    from backtest.data import load_candles, load_funding_frame
    from backtest.engine import latency_problem
    from backtest.runlog import RunLog

    start = parse_day(args.start, "--from")
    end = parse_day(args.end, "--to")
    if start >= end:
        raise UsageError("--from must be before --to")
    if args.report.exists() and not args.report.is_dir():
        raise UsageError(f"--report {args.report}: a file is there, not a folder")
    retrain_ms = parse_duration(args.retrain_every, "--retrain-every")
    window = plot_window(args.plot_window, start, end)
    try:
        quantity = Decimal(args.ema_quantity)
    except ArithmeticError as exc:
        raise UsageError(f"--ema-quantity {args.ema_quantity!r}: not a number") from exc
    if not quantity > 0:
        raise UsageError("--ema-quantity must be positive")
    if args.fidelity == "http" and args.config is None:
        raise UsageError("--fidelity http needs --config with the model servers to ask")
    conflict = conflicting_vote_flags(args)
    if conflict:
        raise UsageError(conflict)
    config = settings.load(args.config, args.symbol or "BTCUSDT")
    symbol, note = chosen_symbol(args.symbol, config.market.symbols)
    if note:
        print(note)
    config = settings.with_symbol(config, symbol)
    problem = latency_problem(config.trading.latency_ms, args.interval, base_interval_ms(args.interval))
    if problem is not None:
        raise UsageError(problem)
    dirs = [Path(p.strip()) for p in args.models.split(",")] if args.models else []
    for d in dirs:
        if not d.is_dir():
            raise UsageError(f"--models: {d} is not a model directory")
    candles, funding_dir = load_candles(symbol, args.interval, args.data)
    # the runs' records go to the report folder, stamped with market time: on the terminal the
    # order path's routine messages would bury the progress bar (backtest.runlog)
    log = RunLog(args.report / "backtest.log", args.log_level or "INFO")
    with log, interrupt_at_once():
        funding = load_funding_frame(funding_dir, symbol)
        status = asyncio.run(
            _run(args, config, candles, funding, start, end, retrain_ms, quantity, dirs, log, window)
        )
    print(log.summary())
    return status


async def _run(
    args: argparse.Namespace,
    config: Any,
    candles: Any,
    funding: Any,
    start: int,
    end: int,
    retrain_ms: int,
    quantity: Decimal,
    dirs: list[Path],
    log: RunLog,
    window: tuple[int, int] | None,
) -> int:
    from backtest import settings
    from backtest.data import history_of, span_cut_note
    from backtest.ema import EmaCross, cross_signals
    from backtest.engine import RunOptions, run_backtest
    from backtest.votes import TrainSettings, VoteBook, model_votes, trained_models, walk_forward_models

    symbol = config.market.symbols[0]
    history = history_of(candles, symbol, start, end, interval=args.interval, funding=funding)
    cut = span_cut_note(history, start, end)
    if cut:
        print(cut)
    report_dir: Path = args.report
    report_dir.mkdir(parents=True, exist_ok=True)
    bar = _Bar()
    work = Path(tempfile.mkdtemp(prefix="xylen-backtest-models-"))
    try:
        ema = EmaCross(cross_signals(history.candles["close"].to_numpy()), quantity)
        reference = None
        if args.strategy == "ema_cross":
            result = await run_backtest(
                config,
                history,
                strategy=ema,
                options=RunOptions(skip_idle=not args.no_skip, progress=bar("EMA"), log=log),
            )
        else:
            http = None
            book = None
            if args.fidelity == "http":
                from coordinator.model_client import ModelClients
                from xylen.config.secrets import load_secrets

                http = ModelClients(config.model_servers, load_secrets().model_token)
                await _reachable(http, config.model_servers)
            else:
                train = TrainSettings(horizon_minutes=config.trading.horizon_minutes, seeds=(42, 7, 1234))
                before = candles.iloc[: int((candles["open_time"] < start).sum())].reset_index(drop=True)
                if args.walk_forward:
                    print(f"walk-forward: training {len(train.seeds)} models every {args.retrain_every} ...")
                    models = walk_forward_models(candles, history, retrain_ms, work, train)
                elif dirs:
                    models = model_votes(dirs, history)
                else:
                    print(f"training {len(train.seeds)} small models on the candles before --from ...")
                    models = trained_models(before, history, work, train)
                book = VoteBook(models)
                config = settings.with_models(config, book.model_ids)
            options = RunOptions(skip_idle=not args.no_skip, progress=bar("ensemble"), log=log)
            result = await run_backtest(config, history, votes=book, http_models=http, options=options)
            ema = EmaCross(cross_signals(history.candles["close"].to_numpy()), quantity)
            reference = await run_backtest(
                config, history, strategy=ema, options=RunOptions(progress=bar("EMA"), log=log)
            )
    finally:
        bar.close()
        shutil.rmtree(work, ignore_errors=True)
    return _report(result, reference, report_dir, window)


async def _reachable(http: Any, configured: list[Any]) -> None:
    """Returns once every enabled model server of ``configured`` has answered ``/health`` through
    ``http``; otherwise ``http`` is closed and the command fails naming the servers that did not
    answer (a span run without their votes would not be the config's ensemble: every decision a HOLD
    for want of quorum)."""
    from xylen.errors import XylenError

    servers = {s.id: s for s in configured if s.enabled}  # at least the quorum: the config checks it
    answers = await http.health_all()
    silent = [f"{sid} ({servers[sid].url})" for sid, answer in answers.items() if answer is None]
    if not silent:
        return
    await http.close()
    raise XylenError(
        f"--fidelity http: no answer to /health from {', '.join(silent)}; start the servers"
        " (xylen model-server) or disable them in the config"
    )


def _report(result: Any, reference: Any, report_dir: Path, window: tuple[int, int] | None) -> int:
    try:
        from backtest.report import print_summary, write_report
    except ImportError:  # the report side is not installed: the frames only
        result.decisions.to_csv(report_dir / "decisions.csv", index=False)
        result.trades.to_csv(report_dir / "trades.csv", index=False)
        print(f"{len(result.trades)} trades, {len(result.decisions)} decisions written to {report_dir}")
        return 0
    baselines = {reference.strategy: reference} if reference is not None else None
    summary = write_report(result, report_dir, baselines=baselines, window=window)
    print_summary(summary)
    print(f"report: {report_dir / 'report.html'}")
    return 0


class _Bar:
    """A rich progress bar per run (candles done of the span)."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()
        )
        self.progress.start()

    def __call__(self, name: str) -> Any:
        task = self.progress.add_task(name, total=None)

        def update(done: int, total: int) -> None:
            self.progress.update(task, completed=done, total=total)

        return update

    def close(self) -> None:
        self.progress.stop()
