"""``python -m paper_exchange``: the same as ``xylen paper-exchange`` (same options).

Exit status: 0 after a graceful shutdown, 1 on a runtime failure, 2 on bad usage or a bad
config (the message names the key).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from xylen.cli import paper_exchange as cli
from xylen.errors import XylenError
from xylen.logs import setup_logging

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m paper_exchange",
        description="Serve a Binance USD-M compatible paper exchange replaying stored candles.",
    )
    parser.add_argument(
        "--home", default=None, help="folder holding all state (default $XYLEN_HOME, else ./data)"
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--log-format", default="auto", choices=["auto", "text", "json"])
    cli.add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    try:
        return cli.run(args)
    except XylenError as exc:
        print(f"paper_exchange: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
