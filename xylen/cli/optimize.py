"""``xylen optimize``: Optuna over the ensemble's and risk manager's settings on backtest windows.

Runs ``--trials`` trials of :mod:`backtest.optimize` in the study ``--study`` of the RDB storage
``--storage`` (default: a SQLite file under the home folder), then writes the study's report: the
best trials with their in-sample and out-of-sample figures and the parameter importances
(``--report DIR``/report.json, default under the home folder) and prints it.  Several processes or
hosts work on one study by giving the same ``--storage`` URL and ``--study`` name (a database
server, e.g. ``postgresql://user@host/xylen``, for several hosts).  Bad usage: exit 2.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xylen.cli.span_args import add_span_arguments, base_interval_ms
from xylen.errors import UsageError

if TYPE_CHECKING:
    from backtest.runlog import RunLog

OBJECTIVE_CHOICES = ("sharpe", "calmar", "profit_factor", "log_loss")
STORAGE_ENV = "XYLEN_OPTUNA_STORAGE"  # a storage URL that may hold a password: read from the environment


def register(sub: Any) -> None:
    """Add the ``optimize`` subcommand."""
    parser = sub.add_parser(
        "optimize",
        help="search the ensemble's and risk settings with Optuna on walk-forward backtest windows",
        description="Optuna trials over the ensemble's and the risk manager's settings, each scored by the "
        "backtest on in-sample windows after the data the models were trained on; the report shows the "
        "best trials' out-of-sample figures beside the in-sample ones and the parameter importances.",
    )
    add_span_arguments(parser, "2024-01-01", "2024-04-01")
    parser.add_argument("--objective", choices=OBJECTIVE_CHOICES, default="sharpe", help="default sharpe")
    parser.add_argument("--trials", type=int, default=20, help="trials this worker runs (default 20)")
    parser.add_argument("--study", default=None, help="study name (default: xylen-<symbol>-<objective>)")
    parser.add_argument(
        "--storage",
        default=None,
        help=f"Optuna RDB storage URL (default: ${STORAGE_ENV}, else sqlite:///<home>/optimize/study.db); "
        "keep a database password out of it: use ~/.pgpass or the environment variable",
    )
    parser.add_argument(
        "--windows", type=int, default=2, help="in-sample windows scored per trial (default 2)"
    )
    parser.add_argument(
        "--holdout", type=float, default=0.25, help="share of the span kept out of sample (default 0.25)"
    )
    parser.add_argument(
        "--walk-forward", action="store_true", help="retrain the models every --retrain-every"
    )
    parser.add_argument("--retrain-every", default="30d", help="walk-forward retraining period (default 30d)")
    parser.add_argument(
        "--models", default=None, help="model directories trained before --from, comma-separated"
    )
    parser.add_argument(
        "--seeds", default="42,7,1234", help="seeds of the models trained for the study (default 42,7,1234)"
    )
    parser.add_argument("--top", type=int, default=5, help="best trials in the report (default 5)")
    parser.add_argument("--report", type=Path, default=None, help="report folder (default under the home)")
    parser.add_argument("--seed", type=int, default=None, help="this worker's sampler seed (default random)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="stop starting trials after this many seconds (default none)",
    )
    parser.set_defaults(func=run)


def redacted(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***`` (for messages)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "(unparsable URL)"


def _seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError as exc:
        raise UsageError(f"--seeds {text!r}: use integers separated by commas, e.g. 42,7") from exc
    if not seeds:
        raise UsageError("--seeds: give at least one seed")
    return seeds


def _trained_before(dirs: list[Path], start_ms: int) -> None:
    """Refuse a model whose training labels reach ``--from``: its figures would be in-sample."""
    from xylen.data.schema import interval_ms

    for d in dirs:
        meta_path = d / "metadata.json"
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UsageError(f"--models: {d} has no readable metadata.json ({exc})") from exc
        end = meta.get("train_end")
        if not isinstance(end, int):
            continue  # a model without its training span: taken as given
        step = interval_ms(str(meta.get("base_interval", "5m")))
        label_end = end + int(meta.get("horizon_bars", 0)) * step
        if label_end >= start_ms:
            raise UsageError(
                f"--models: {d} was trained on candles up to {_iso(label_end)}, not before --from; "
                "its windows would not be out of sample"
            )


def _iso(ms: int) -> str:
    import pandas as pd

    return pd.Timestamp(ms, unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M")


def run(args: argparse.Namespace) -> int:
    """Parse, open the study, run the trials, report (module docstring)."""
    from backtest import settings
    from backtest.data import load_candles, load_funding_frame
    from backtest.runlog import LOGGERS, RunLog
    from xylen.cli.backtest import interrupt_at_once, parse_day, parse_duration
    from xylen.paths import Home

    start = parse_day(args.start, "--from")
    end = parse_day(args.end, "--to")
    if start >= end:
        raise UsageError("--from must be before --to")
    if args.trials < 0:
        raise UsageError(f"--trials {args.trials}: must be 0 or more")
    if args.report is not None and args.report.exists() and not args.report.is_dir():
        raise UsageError(f"--report {args.report}: a file is there, not a folder")
    if args.top < 1:
        raise UsageError(f"--top {args.top}: must be 1 or more")
    if not math.isfinite(args.holdout):
        raise UsageError(f"--holdout {args.holdout}: not a number")
    if args.timeout is not None and not (math.isfinite(args.timeout) and args.timeout > 0):
        raise UsageError(f"--timeout {args.timeout}: must be a positive number of seconds")
    retrain_ms = parse_duration(args.retrain_every, "--retrain-every")
    base_interval_ms(args.interval)
    seeds = _seeds(args.seeds)
    dirs = [Path(p.strip()) for p in args.models.split(",")] if args.models else []
    for d in dirs:
        if not d.is_dir():
            raise UsageError(f"--models: {d} is not a model directory")
    _trained_before(dirs, start)
    if dirs and args.walk_forward:
        raise UsageError("--models and --walk-forward exclude each other (walk-forward trains its own)")
    config = settings.load(args.config, args.symbol or "BTCUSDT")
    symbol = args.symbol or config.market.symbols[0]
    config = settings.with_symbol(config, symbol)
    home = Home.resolve(args.home).root / "optimize"
    storage_url = args.storage or os.environ.get(STORAGE_ENV) or f"sqlite:///{(home / 'study.db').resolve()}"
    home.mkdir(parents=True, exist_ok=True)  # the votes cache and the report live here
    name = args.study or f"xylen-{symbol}-{args.objective}"
    candles, funding_dir = load_candles(symbol, args.interval, args.data)
    study_settings = {
        "symbol": symbol,
        "interval": args.interval,
        "from": args.start,
        "to": args.end,
        "objective": args.objective,
        "windows": args.windows,
        "holdout": args.holdout,
        "votes": "walk-forward" if args.walk_forward else ("models" if dirs else "trained-before"),
        "retrain_every": args.retrain_every if args.walk_forward else None,
        "models": [str(d.resolve()) for d in dirs],
        "seeds": list(seeds) if not dirs else [],
        "data": str(args.data.resolve()) if args.data is not None else "shipped",
        "config": hashlib.sha256(
            json.dumps(config.model_dump(mode="json"), sort_keys=True).encode()
        ).hexdigest()[:16],
    }
    out_dir: Path = args.report or home / name
    # the runs' records (and Optuna's) go to the report folder, stamped with market time: on the
    # terminal the order path's routine messages would bury the progress bar (backtest.runlog);
    # Optuna is imported first, as it installs its own terminal handler on import
    import optuna  # noqa: F401

    log = RunLog(out_dir / "optimize.log", args.log_level or "INFO", (*LOGGERS, "optuna"))
    work = Path(tempfile.mkdtemp(prefix="xylen-optimize-"))
    try:
        with log, interrupt_at_once():
            funding = load_funding_frame(funding_dir, symbol)
            status = _optimize(
                args, config, candles, funding, start, end, retrain_ms, seeds, dirs, home, storage_url, name,
                study_settings, work, out_dir, log,
            )  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(log.summary())
    return status


def _optimize(
    args: argparse.Namespace,
    config: Any,
    candles: Any,
    funding: Any,
    start: int,
    end: int,
    retrain_ms: int,
    seeds: tuple[int, ...],
    dirs: list[Path],
    home: Path,
    storage_url: str,
    name: str,
    study_settings: dict[str, Any],
    work: Path,
    out_dir: Path,
    log: RunLog,
) -> int:
    import sqlalchemy.exc

    from backtest import optimize as opt
    from backtest import settings
    from backtest.data import history_of, span_cut_note
    from backtest.votes import TrainSettings, model_votes, trained_models, walk_forward_models

    symbol = config.market.symbols[0]
    full = history_of(candles, symbol, start, end, interval=args.interval, funding=funding)
    cut = span_cut_note(full, start, end)
    if cut:
        print(cut)
    plan = opt.plan_windows(
        int(full.open_time[full.first]), int(full.open_time[full.stop - 1]) + full.step_ms, full.step_ms,
        args.windows, args.holdout,
    )  # fmt: skip
    shortest = min(b - a for a, b in plan.in_sample)
    if args.objective == "sharpe" and shortest < 2 * opt.DAY_MS:
        raise UsageError(
            f"--objective sharpe needs in-sample windows of 2 days or more (daily returns), these are "
            f"{shortest / opt.DAY_MS:.1f} days: lengthen the span, use fewer --windows or another objective"
        )
    try:
        storage = opt.storage_for(storage_url)
    except (ValueError, ImportError, sqlalchemy.exc.SQLAlchemyError) as exc:
        shown = redacted(storage_url)
        raise UsageError(f"storage {shown}: {str(exc).replace(storage_url, shown)}") from exc
    study = opt.open_study(storage, name, args.objective, study_settings, args.seed)

    train = TrainSettings(horizon_minutes=config.trading.horizon_minutes, seeds=seeds)

    def compute() -> list[Any]:
        if dirs:
            return model_votes(dirs, full)
        if args.walk_forward:
            print(f"walk-forward: training {len(seeds)} models every {args.retrain_every} ...")
            return walk_forward_models(candles, full, retrain_ms, work, train)
        print(f"training {len(seeds)} models on the candles before --from ...")
        return trained_models(candles[candles["open_time"] < start].reset_index(drop=True), full, work, train)

    vote_keys = ("symbol", "interval", "from", "to", "votes", "retrain_every", "models", "seeds", "data")
    key = {k: study_settings[k] for k in vote_keys} | {"horizon_minutes": config.trading.horizon_minutes}
    models = opt.cached_votes(home / "votes", opt.settings_key(key), compute)
    config = settings.with_models(config, [m.model_id for m in models])
    market = opt.Market(candles, full, models, plan)
    if args.trials:
        with _TrialBar(args.trials) as bar:
            study.optimize(
                opt.objective_fn(market, config, args.objective, log),
                n_trials=args.trials,
                timeout=args.timeout,
                callbacks=[bar.done],
            )
    result = opt.report(study, market, config, args.objective, args.top, log)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(
        json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    _print(result)
    print(f"report: {out_dir / 'report.json'}")
    return 0 if result["best"] else 1


class _TrialBar:
    """A rich progress bar over this worker's trials, the study's best value beside it (Optuna's own
    bar would print each trial's line to the terminal; they are in the log)."""

    def __init__(self, trials: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()
        )
        self.task = self.progress.add_task("trials", total=trials)

    def __enter__(self) -> _TrialBar:
        self.progress.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.progress.stop()

    def done(self, study: Any, _trial: Any) -> None:
        """Optuna's callback after each trial of this worker."""
        try:
            best = f"trials (best {_fmt(study.best_value)})"
        except ValueError:  # no trial completed yet
            best = "trials"
        self.progress.update(self.task, advance=1, description=best)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _print(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(
        f"study {result['study']}: {result['objective']} ({result['direction']}), trials {result['trials']}"
    )
    objective = result["objective"]
    table = Table(title="best trials: in-sample (IS) vs out-of-sample (OOS)")
    for head in (
        "trial",
        "value",
        f"IS {objective}",
        f"OOS {objective}",
        "IS return",
        "OOS return",
        "IS trades",
        "OOS trades",
    ):
        table.add_column(head)
    for row in result["best"]:
        ins, oos = row["in_sample"] or {}, row["out_of_sample"] or {}
        table.add_row(
            str(row["trial"]), _fmt(row["value"]), _fmt(ins.get(objective)), _fmt(oos.get(objective)),
            _fmt(ins.get("total_return")), _fmt(oos.get("total_return")), _fmt(ins.get("trades")),
            _fmt(oos.get("trades")),
        )  # fmt: skip
    console.print(table)
    if result["best"]:
        console.print(
            "best parameters: " + ", ".join(f"{k}={_fmt(v)}" for k, v in result["best"][0]["params"].items())
        )
    if result["importances"]:
        console.print("importances: " + ", ".join(f"{k} {v:.2f}" for k, v in result["importances"].items()))
