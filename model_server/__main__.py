"""``python -m model_server``: the same as ``xylen model-server`` (service files use this)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from xylen.cli.model_server import add_arguments, run
from xylen.errors import XylenError
from xylen.logs import setup_logging


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model_server", description="Xylen model server")
    parser.add_argument("--home", default=None, help="home folder (default $XYLEN_HOME, else ./data)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--log-format", default="auto", choices=["auto", "text", "json"])
    add_arguments(parser)
    args = parser.parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    try:
        return run(args)
    except XylenError as exc:
        print(f"model_server: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
