"""``python -m model_server``: the same as ``xylen model-server`` (service files use this)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from xylen.cli.model_server import add_arguments, run
from xylen.cli.service_main import service_main


def main(argv: Sequence[str] | None = None) -> int:
    return service_main(
        argv,
        name="model_server",
        description="Xylen model server",
        home_help="home folder (default $XYLEN_HOME, else ./data)",
        add_arguments=add_arguments,
        run=run,
    )


if __name__ == "__main__":
    sys.exit(main())
