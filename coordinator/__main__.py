"""``python -m coordinator [--home DIR] [--config FILE] [--beats N]``: the coordinator service.

The same as ``xylen run`` (service files use this form).  Exit status: 0 after a clean stop, 1 on a
runtime failure, 2 for bad usage or a bad config (one line naming the key).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from xylen.cli.run import add_arguments, run
from xylen.cli.service_main import service_main


def main(argv: Sequence[str] | None = None) -> int:
    return service_main(
        argv,
        name="coordinator",
        description=__doc__,
        home_help="folder holding all state (default: $XYLEN_HOME, else the config's storage.home)",
        add_arguments=add_arguments,
        run=run,
    )


if __name__ == "__main__":
    sys.exit(main())
