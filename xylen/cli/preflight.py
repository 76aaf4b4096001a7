"""``xylen preflight [--config FILE]``: everything to verify before trading for real.

One line per check, PASS / WARN / FAIL, then a summary; exit 1 when any check fails (warnings do
not), 2 for a bad config or bad options.  Local checks come from :mod:`xylen.preflight`; the venue
is read here, through the coordinator's exchange client (the same requests, signing and clock
handling the coordinator uses), and handed to the checks as a
:class:`~xylen.preflight.venue.VenueState`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

from xylen.config.loader import load_config
from xylen.config.schema import XylenConfig
from xylen.config.secrets import SECRETS_FILE_ENV, Secrets, load_secrets
from xylen.errors import UsageError
from xylen.paths import Home
from xylen.preflight import local, models, venue
from xylen.preflight.report import Report, failed
from xylen.timeutil import wall_ms


def register(sub: Any) -> None:
    """Add the ``preflight`` subcommand to the top-level subparsers."""
    parser = sub.add_parser(
        "preflight",
        help="check keys, clock, account modes, model servers, backups, disk, risk and run history",
        description="Check everything that should hold before trading for real. Each check prints "
        "PASS, WARN or FAIL; the exit status is 1 when any check fails.",
    )
    parser.add_argument(
        "--config", default=None, metavar="FILE", help="config.yaml (default: embedded defaults)"
    )
    parser.add_argument(
        "--history",
        default=None,
        metavar="DB",
        help="journal (xylen.db) of the paper or testnet run (default: the home's own; required live)",
    )
    parser.add_argument(
        "--min-history-decisions",
        type=int,
        default=288,
        metavar="N",
        help="decisions a run history needs (default 288: one day of 5-minute beats)",
    )
    parser.add_argument(
        "--min-free-gb", type=float, default=1.0, help="free disk under this fails (default 1)"
    )
    parser.add_argument("--skip-venue", action="store_true", help="do not contact the exchange")
    parser.set_defaults(func=run)


def _home(config: XylenConfig, given: str | None) -> Home:
    """``--home``, else ``$XYLEN_HOME``, else the config's ``storage.home`` (as the coordinator)."""
    if given is None and not os.environ.get("XYLEN_HOME"):
        return Home.resolve(config.storage.home)
    return Home.resolve(given)


async def read_venue(config: XylenConfig, secrets: Secrets) -> venue.VenueState:
    """Clock, position mode, per-symbol margin mode, leverage and its limit, USDT balance."""
    from coordinator.exchange.client import BinanceFuturesClient
    from coordinator.exchange.constants import Endpoint

    position_risk_v2 = Endpoint("GET", "/fapi/v2/positionRisk", 5, signed=True)  # has marginType, leverage
    brackets = Endpoint("GET", "/fapi/v1/leverageBracket", 1, signed=True)
    async with await BinanceFuturesClient.create(config.exchange, secrets) as client:
        before = wall_ms()
        server = await client.server_time()
        after = wall_ms()
        hedge = await client.get_position_mode()
        rows = await client.raw_request(position_risk_v2)
        limits = await client.raw_request(brackets)
        balances = await client.get_account_balance()
    max_leverage = {
        str(item["symbol"]): max(int(b["initialLeverage"]) for b in item["brackets"])
        for item in limits
        if item.get("brackets")
    }
    symbols: dict[str, venue.SymbolSetting] = {}
    for row in rows:
        symbol = str(row["symbol"])
        held = abs(Decimal(str(row.get("positionAmt", "0"))))
        seen = symbols.get(symbol)
        symbols[symbol] = venue.SymbolSetting(
            margin_mode="isolated" if str(row.get("marginType", "")).lower() == "isolated" else "cross",
            leverage=int(row.get("leverage", 0)),
            position_amt=held + (seen.position_amt if seen else Decimal(0)),  # hedge mode: two rows
            max_leverage=max_leverage.get(symbol),
        )
    usdt = next((b.balance for b in balances if b.asset == "USDT"), Decimal(0))
    return venue.VenueState(server, before, after, hedge, symbols, usdt)


def run(args: argparse.Namespace) -> int:
    if args.min_history_decisions < 1:
        raise UsageError(f"--min-history-decisions must be >= 1, got {args.min_history_decisions}")
    config = load_config(args.config)
    home = _home(config, getattr(args, "home", None))
    env = dict(os.environ)
    report = Report()

    file_check, file_values = local.secrets_file_check(env)
    report.add(file_check)
    report.add(*local.key_checks(config, env, file_values))
    # The file's values only when it passed (a refused file is reported above, not read)
    secrets = load_secrets({**file_values, **{k: v for k, v in env.items() if k != SECRETS_FILE_ENV}})
    report.add(local.leverage_config_check(config))

    if args.skip_venue:
        pass
    else:
        try:
            state = asyncio.run(read_venue(config, secrets))
        except Exception as exc:  # any failure to read the venue is this check's FAIL, not a crash
            report.add(
                failed(
                    "venue", f"{config.exchange.mode.value} venue not readable: {type(exc).__name__}: {exc}"
                )
            )
        else:
            report.add(
                venue.clock_check(state, config.exchange.recv_window_ms),
                venue.position_mode_check(state),
                venue.margin_mode_check(config, state),
                venue.leverage_venue_check(config, state),
                venue.risk_check(config, state),
            )

    token = secrets.model_token.get_secret_value() if secrets.model_token else None
    report.add(*asyncio.run(models.model_checks(config, token)))
    report.add(local.backup_check(home.database, home.backups))
    report.add(local.disk_check(home.root, min_free_gib=args.min_free_gb))
    history = Path(args.history) if args.history else None
    report.add(local.history_check(config, home.database, history, args.min_history_decisions))

    for line in report.lines():
        print(line)
    return report.exit_code
