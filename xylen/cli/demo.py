"""``xylen demo``: the end-to-end run behind ``make run``, on embedded defaults.

It runs the data and feature pipeline (:mod:`xylen.pipeline`) on the real Binance data shipped
beside the repository, a short bracketed trade through the paper exchange over HTTP
(:mod:`paper_exchange.smoke`), then the whole system as child processes (:mod:`xylen.demo_services`):
the paper exchange replaying the first symbol, three model servers and the coordinator, printing
one line per beat until Ctrl-C or ``--duration`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from xylen.config import load_config
from xylen.demo_services import run_services
from xylen.errors import UsageError
from xylen.paths import Home
from xylen.pipeline import candidate_dirs, format_report, run_symbol


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "demo", help="run the whole system end to end on the shipped data (pipeline, services, beats)"
    )
    parser.add_argument("--config", default=None, help="config file (default: embedded defaults)")
    parser.add_argument(
        "--data",
        default=None,
        help="folder with market data (freqtrade feather files or a binance.vision tree); "
        "default $XYLEN_DATA_DIR, data.source_dir, then ../shared/data",
    )
    parser.add_argument(
        "--symbols", default="BTCUSDT,ETHUSDT", help="comma-separated symbols (default BTCUSDT,ETHUSDT)"
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop the services this long after the coordinator is up (default: run until Ctrl-C)",
    )
    parser.add_argument(
        "--pipeline-only",
        action="store_true",
        help="only the data pipeline and the trade through the paper exchange, no services",
    )
    parser.add_argument(
        "--show-trades",
        action="store_true",
        help="paper only: the coordinator prices no costs and needs no minimum edge, so the demo's weak "
        "models trade and the order path (entries, brackets, closes) can be watched",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.duration is not None and args.duration <= 0:
        raise UsageError("--duration: must be positive")
    config = load_config(args.config)
    home = Home.resolve(args.home or (config.storage.home if args.config else None))
    dirs = candidate_dirs(args.data, config.data.source_dir)
    symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
    started = time.perf_counter()
    print(f"xylen demo: home {home.root.resolve()}")
    for symbol in symbols:
        report = run_symbol(symbol, home, dirs, config.data.mirror, config.data.compression)
        for line in format_report(report):
            print(line, flush=True)
    if symbols:
        # The CLI is the composition root: the service packages are imported here, lazily.
        from paper_exchange.smoke import smoke_trade

        print(f"a {symbols[0]} trade through the paper exchange, over HTTP with signed requests:")
        for line in asyncio.run(smoke_trade(home, symbols[0])):
            print(f"  {line}", flush=True)
    if args.pipeline_only or not symbols:
        print(f"done in {time.perf_counter() - started:.1f} s.")
        return 0
    print(f"pipeline done in {time.perf_counter() - started:.1f} s; starting the services on 127.0.0.1:")
    backtest = (
        f"backtest:  xylen backtest --symbol {symbols[0]} --from 2024-03-01 --to 2024-04-01 --report DIR"
    )

    def out(line: str) -> None:  # the services' lines, and the backtest command once they are up
        print(line + (f"\n{backtest}" if line.startswith("logs:") else ""), flush=True)

    return run_services(home, symbols[0], args.duration, out, trade_freely=args.show_trades)
