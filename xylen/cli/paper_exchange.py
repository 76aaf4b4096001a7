"""``xylen paper-exchange``: the Binance USDⓈ-M compatible paper exchange on 127.0.0.1.

The API key and secret come from ``--api-key``/``--api-secret``, else ``XYLEN_PAPER_API_KEY`` /
``XYLEN_PAPER_API_SECRET``, else the documented local defaults (``xylen-paper-key`` /
``xylen-paper-secret``).  A fault file (``--faults``) is validated before anything starts; a bad
one exits 2 with a message naming the key.  SIGINT/SIGTERM shut the server down gracefully.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from xylen.config.secrets import load_secrets
from xylen.errors import UsageError, XylenError
from xylen.paths import Home

logger = logging.getLogger(__name__)


def register(sub: Any) -> None:
    """Add the ``paper-exchange`` subcommand to the top-level subparsers."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "paper-exchange",
        help="run the paper exchange (Binance USD-M REST + user-data stream) on 127.0.0.1",
        description="Serve a Binance USD-M compatible paper exchange replaying stored candles.",
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``xylen paper-exchange`` (shared with ``python -m paper_exchange``)."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9000, help="port (default 9000)")
    parser.add_argument("--speed", type=float, default=60.0, help="replay speed, x wall time (default 60)")
    parser.add_argument("--faults", default=None, metavar="FILE", help="fault-injection YAML file")
    parser.add_argument(
        "--symbols",
        default=None,
        help="comma-separated symbols (default: every series of --interval in the store)",
    )
    parser.add_argument("--interval", default="5m", help="candle interval replayed (default 5m)")
    parser.add_argument(
        "--start",
        default=None,
        help="replay start: YYYY-MM, YYYY-MM-DD, ISO time or ms (default: the service's)",
    )
    parser.add_argument("--balance", default="10000", help="starting USDT balance (default 10000)")
    parser.add_argument("--api-key", default=None, help="API key (default $XYLEN_PAPER_API_KEY)")
    parser.add_argument("--api-secret", default=None, help="API secret (default $XYLEN_PAPER_API_SECRET)")
    parser.add_argument(
        "--db", default=None, metavar="PATH", help="exchange state database (default under --home)"
    )
    parser.add_argument("--tick-ms", type=int, default=100, help="replay clock tick in ms (default 100)")
    parser.add_argument(
        "--funding-dir",
        default=None,
        metavar="DIR",
        help="folder of freqtrade *-8h-funding_rate.feather files (default: <home>/funding, else "
        "freqtrade_binance_futures/ in the shipped data folder; without files the rate is 0.0001)",
    )


def parse_start(value: str | None) -> int | None:
    """``--start`` as UTC milliseconds."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return int(text)
    for fmt in ("%Y-%m", "%Y-%m-%d"):
        try:
            return int(datetime.strptime(text, fmt).replace(tzinfo=timezone.utc).timestamp() * 1000)
        except ValueError:
            pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--start: cannot read {value!r} (YYYY-MM, YYYY-MM-DD, ISO time or ms)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


def build_settings(args: argparse.Namespace) -> Any:
    """Transport settings from the arguments and the environment (validated)."""
    from paper_exchange.settings import TransportSettings

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port: {args.port} is not a port number")
    if args.speed <= 0:
        raise UsageError("--speed: must be positive")
    if args.tick_ms <= 0:
        raise UsageError("--tick-ms: must be positive")
    secrets = load_secrets()
    key = args.api_key or secrets.paper_api_key.get_secret_value()
    secret = args.api_secret or secrets.paper_api_secret.get_secret_value()
    return TransportSettings(
        host=args.host,
        port=args.port,
        api_keys={key: secret},
        tick_ms=args.tick_ms,
        faults_file=Path(args.faults) if args.faults else None,
    )


def _balance(value: str) -> Decimal:
    try:
        balance = Decimal(value)
    except InvalidOperation:
        raise UsageError(f"--balance: {value!r} is not a number") from None
    if not balance.is_finite() or balance <= 0:
        raise UsageError("--balance: must be a positive number")
    return balance


def find_funding_dir(explicit: str | None, home: Home) -> Path | None:
    """The funding-rate folder: ``--funding-dir``, ``<home>/funding``, or the shipped data's."""
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_dir():
            raise UsageError(f"--funding-dir: {path} is not a folder")
        return path
    if (home.root / "funding").is_dir():
        return home.root / "funding"
    from xylen.pipeline import candidate_dirs

    for folder in candidate_dirs(None, None):
        shipped = folder / "freqtrade_binance_futures"
        if any(shipped.glob("*-8h-funding_rate.feather")):
            return shipped
    return None


def run(args: argparse.Namespace) -> int:
    """Validate everything, build the service, serve until SIGINT/SIGTERM."""
    from paper_exchange.app import create_app, serve
    from paper_exchange.faults import Faults

    settings = build_settings(args)
    faults = Faults.from_file(settings.faults_file)  # a bad file: ConfigError, exit 2
    overrides: dict[str, Any] = {
        "interval": args.interval,
        "start_ms": parse_start(args.start),
        "speed": args.speed,
        "balance": _balance(args.balance),
    }
    if args.symbols is not None:
        symbols = tuple(s.strip().upper() for s in args.symbols.split(",") if s.strip())
        if not symbols:
            raise UsageError("--symbols: at least one symbol is needed")
        overrides["symbols"] = symbols
    if args.db:
        overrides["db_path"] = Path(args.db)
    home = Home.resolve(getattr(args, "home", None))
    funding_dir = find_funding_dir(args.funding_dir, home)
    if funding_dir is not None:
        overrides["funding_dir"] = funding_dir
    try:
        from paper_exchange.service import PaperExchangeService, ServiceConfig
    except ImportError as exc:
        raise XylenError(f"the paper exchange engine is not available: {exc}") from exc
    try:
        service = PaperExchangeService(ServiceConfig.from_home(home, **overrides))
    except ValueError as exc:  # no candles for the symbols/interval, bad start, ...
        raise UsageError(f"paper exchange: {exc}") from exc
    app = create_app(service, settings, faults=faults)
    print(f"paper exchange on http://{settings.host}:{settings.port} (Ctrl-C to stop)", flush=True)
    asyncio.run(serve(app, settings.host, settings.port, settings.shutdown_timeout_s))
    return 0
