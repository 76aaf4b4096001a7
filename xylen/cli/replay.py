"""``xylen replay``: a live coordinator's journal recomputed by the backtest's decision pipeline.

Every logged decision of ``--db`` (within ``--from``..``--to``) is recomputed (:mod:`backtest.replay`)
and compared with the logged one, field by field; each divergence is printed.  Exit status: 0 when
none diverges, 1 otherwise, 2 for a missing database, a file that holds no journal, or bad arguments.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from xylen.errors import UsageError

SHOWN = 50  # divergences printed in full; the count covers all


def register(sub: Any) -> None:
    """Add the ``replay`` subcommand."""
    parser = sub.add_parser(
        "replay",
        help="recompute the journal's decisions with the backtest pipeline and report divergences",
        description="Replay the decisions logged in a coordinator database through a fresh ensemble "
        "(the logged votes, markets and outcomes, in time order) and compare each with the logged one.",
    )
    parser.add_argument("--db", type=Path, required=True, help="the coordinator's database (xylen.db)")
    parser.add_argument(
        "--config", type=Path, default=None, help="the run's config.yaml (default: embedded defaults)"
    )
    parser.add_argument("--from", dest="start", default=None, help="first decision reported, e.g. 2024-01-01")
    parser.add_argument("--to", dest="end", default=None, help="end of the decisions reported (exclusive)")
    parser.add_argument("--symbol", default=None, help="only this symbol's decisions")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Open, replay, print (module docstring)."""
    from backtest import settings
    from backtest.replay import open_journal, replay
    from xylen.cli.backtest import parse_day

    start = parse_day(args.start, "--from") if args.start else None
    end = parse_day(args.end, "--to") if args.end else None
    if start is not None and end is not None and start >= end:
        raise UsageError("--from must be before --to")
    config = settings.load(args.config, args.symbol or "BTCUSDT")
    logging.getLogger("coordinator.storage.db").setLevel(logging.WARNING)  # the in-memory state's migrations
    conn = open_journal(args.db)
    try:
        report = replay(conn, config, start_ms=start, end_ms=end, symbol=args.symbol)
        if report.beats == 0:
            print(_nothing_to_replay(conn, args.symbol))
    finally:
        conn.close()
    for d in report.differences[:SHOWN]:
        print(
            f"DIVERGED {d.beat_id} {d.symbol} ts={d.ts_ms} [{d.check}] {d.name}:"
            f" logged={d.logged!r} replayed={d.replayed!r}"
        )
    if len(report.differences) > SHOWN:
        print(f"... and {len(report.differences) - SHOWN} more differences")
    if report.params_differ:
        print(
            f"note: {report.params_differ} decisions were logged with other decision parameters than"
            " the config's (give the run's --config)"
        )
    diverged = len(report.diverged)
    print(
        f"replayed {report.beats} decisions ({report.outcomes} outcomes fed to the ensemble):"
        f" {report.beats - diverged} identical, {diverged} diverged"
    )
    return 1 if diverged else 0


def _nothing_to_replay(conn: Any, symbol: str | None) -> str:
    """The note when no decision fell in the window: the span of the decisions the journal holds."""
    from xylen.data.quality import format_ms

    where, params = (" WHERE symbol = ?", (symbol,)) if symbol else ("", ())
    sql = f"SELECT MIN(ts_ms), MAX(ts_ms) FROM decisions{where}"  # nosec B608 # constant clause
    first, last = conn.execute(sql, params).fetchone()
    if first is None:
        return "note: the journal holds no decision" + (f" of {symbol}" if symbol else "")
    span = f"{format_ms(first)} to {format_ms(last)} UTC"
    return f"note: no decision in --from..--to; the journal's run from {span}"
