"""``python -m coordinator [--home DIR] [--config FILE] [--beats N]``: the coordinator service.

The same as ``xylen run`` (service files use this form).  Exit status: 0 after a clean stop, 1 on a
runtime failure, 2 for bad usage or a bad config (one line naming the key).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from xylen.cli.run import add_arguments, run
from xylen.errors import XylenError
from xylen.logs import setup_logging


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coordinator", description=__doc__)
    parser.add_argument(
        "--home",
        default=None,
        help="folder holding all state (default: $XYLEN_HOME, else the config's storage.home)",
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--log-format", default="auto", choices=["auto", "text", "json"])
    add_arguments(parser)
    args = parser.parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    try:
        return run(args)
    except XylenError as exc:
        print(f"coordinator: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
