"""``xylen data download|import|list``: fill and inspect the candle store under ``<home>/candles``.

* ``download`` fetches binance.vision kline archives (checksum-verified, cached in
  ``<home>/downloads``) for a symbol, interval and date range and stores them.
* ``import FILE...`` stores local binance.vision zips/CSVs and freqtrade feather/JSON files.
* ``list`` prints one line per stored market/symbol/interval.

Bad arguments raise ``UsageError`` (exit 2); data and download failures exit 1.
"""

from __future__ import annotations

import argparse
import logging

from xylen.data.binance_vision import DEFAULT_MIRROR, IncompleteDownload, download, parse_bound
from xylen.data.importers import import_file
from xylen.data.schema import MARKETS, interval_ms
from xylen.data.store import COMPRESSIONS, CandleStore
from xylen.errors import UsageError
from xylen.paths import Home

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``data`` command and its ``download``, ``import`` and ``list`` actions."""
    parser = subparsers.add_parser("data", help="download, import and list market data")
    inner = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    dl = inner.add_parser("download", help="download klines from data.binance.vision (or a mirror)")
    dl.add_argument("--symbol", required=True, help="e.g. BTCUSDT")
    dl.add_argument("--interval", required=True, help="e.g. 1m, 5m, 1h")
    dl.add_argument("--start", required=True, help="first month or day, YYYY-MM or YYYY-MM-DD (inclusive)")
    dl.add_argument("--end", required=True, help="last month or day, YYYY-MM or YYYY-MM-DD (inclusive)")
    dl.add_argument(
        "--market", default="um", choices=MARKETS, help="um (USD-M, default), spot or cm (COIN-M)"
    )
    dl.add_argument(
        "--mirror", default=DEFAULT_MIRROR, help=f"base URL or local folder (default {DEFAULT_MIRROR})"
    )
    dl.add_argument("--workers", type=int, default=4, help="parallel downloads (default 4)")
    dl.add_argument(
        "--compression", default="gzip", choices=COMPRESSIONS, help="Parquet compression (default gzip)"
    )
    dl.add_argument("--no-progress", action="store_true", help="no progress bar")
    dl.set_defaults(func=run_download)

    imp = inner.add_parser("import", help="import binance.vision zip/CSV or freqtrade feather/JSON files")
    imp.add_argument("files", nargs="+", metavar="FILE", help="files to import")
    imp.add_argument(
        "--market", default=None, choices=MARKETS, help="market (binance.vision files: default um)"
    )
    imp.add_argument("--symbol", default=None, help="override the symbol from the file name")
    imp.add_argument("--interval", default=None, help="override the interval from the file name")
    imp.add_argument(
        "--compression", default="gzip", choices=COMPRESSIONS, help="Parquet compression (default gzip)"
    )
    imp.set_defaults(func=run_import)

    ls = inner.add_parser("list", help="list what the candle store holds")
    ls.set_defaults(func=run_list)


def _check_interval(interval: str) -> str:
    try:
        interval_ms(interval)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    return interval


def run_download(args: argparse.Namespace) -> int:
    """Download, verify, quality-check and store; print the summary."""
    interval = _check_interval(args.interval)
    first, last = parse_bound(args.start, is_end=False), parse_bound(args.end, is_end=True)
    if last < first:
        raise UsageError(f"--end {args.end} is before --start {args.start}")
    if args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    home = Home.resolve(args.home)
    store = CandleStore(home.candles, compression=args.compression)
    try:
        summary = download(
            args.symbol,
            interval,
            args.start,
            args.end,
            market=args.market,
            mirror=args.mirror,
            dest=home.downloads,
            store=store,
            workers=args.workers,
            progress=not args.no_progress,
        )
    except IncompleteDownload as exc:
        print(exc.summary)
        raise
    print(summary)
    return 0


def run_import(args: argparse.Namespace) -> int:
    """Import every file given; stop at the first one that fails."""
    if args.interval is not None:
        _check_interval(args.interval)
    store = CandleStore(Home.resolve(args.home).candles, compression=args.compression)
    total = 0
    for name in args.files:
        result = import_file(name, store, market=args.market, symbol=args.symbol, interval=args.interval)
        total += result.rows_stored
        print(result)
        for line in result.report.lines():
            print(f"  {line}")
    print(f"{len(args.files)} file(s) imported, {total} candle(s) new or changed")
    return 0


def run_list(args: argparse.Namespace) -> int:
    """Print one line per stored series."""
    store = CandleStore(Home.resolve(args.home).candles)
    series = store.list()
    if not series:
        print(f"no candles stored in {store.root}")
        return 0
    for item in series:
        print(item)
    return 0
