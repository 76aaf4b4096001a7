"""Entry point of the ``xylen`` command.

Each subcommand module exposes ``register(subparsers)``, which adds its parser and
sets ``func`` to a callable taking the parsed ``argparse.Namespace`` and returning an
exit status.  Exit status: 0 ok, 1 runtime failure, 2 bad usage or bad config.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from types import ModuleType

from xylen import __version__
from xylen.cli.service_main import LOG_FORMATS, LOG_LEVELS
from xylen.errors import XylenError
from xylen.logs import setup_logging

logger = logging.getLogger(__name__)


def _subcommand_modules() -> list[ModuleType]:
    # Imported here so that `xylen --help` stays fast and one broken optional
    # dependency cannot take the whole command line down at import time.
    from xylen.cli import (
        backtest,
        config_cmd,
        convert_onnx,
        data,
        db,
        demo,
        features,
        lookahead,
        model_server,
        optimize,
        paper_exchange,
        preflight,
        replay,
        risk,
        run,
        train,
    )

    return [
        data, features, train, convert_onnx, model_server, paper_exchange, config_cmd, demo, risk, db, run,
        preflight, backtest, replay, lookahead, optimize,
    ]  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xylen",
        description="Xylen: distributed ML trading for Binance USD-M futures.",
    )
    parser.add_argument("--version", action="version", version=f"xylen {__version__}")
    parser.add_argument(
        "--home",
        default=None,
        help="folder holding all state (default: $XYLEN_HOME, else ./data)",
    )
    parser.add_argument(
        "--log-level",
        default=None,
        choices=LOG_LEVELS,
        help="log level (default: the config's logging.level for `run`, else INFO)",
    )
    parser.add_argument(
        "--log-format",
        default=None,
        choices=LOG_FORMATS,
        help="text in a terminal, JSON lines otherwise (default: logging.format for `run`, else auto)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _subcommand_modules():
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level or "INFO", args.log_format or "auto")
    try:
        status: int = args.func(args)
    except XylenError as exc:
        print(f"xylen: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("xylen: interrupted", file=sys.stderr)
        return 130
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
