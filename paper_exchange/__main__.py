"""``python -m paper_exchange``: the same as ``xylen paper-exchange`` (same options).

Exit status: 0 after a graceful shutdown, 1 on a runtime failure, 2 on bad usage or a bad
config (the message names the key).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from xylen.cli import paper_exchange as cli
from xylen.cli.service_main import service_main


def main(argv: Sequence[str] | None = None) -> int:
    return service_main(
        argv,
        name="paper_exchange",
        description="Serve a Binance USD-M compatible paper exchange replaying stored candles.",
        home_help="folder holding all state (default $XYLEN_HOME, else ./data)",
        add_arguments=cli.add_arguments,
        run=cli.run,
    )


if __name__ == "__main__":
    sys.exit(main())
