"""``python -m coordinator|model_server|paper_exchange``: one entry point for the service modules.

Service files (systemd, launchd, Docker) start the services as modules; each module's
``main`` is :func:`service_main` with its own name, description and ``xylen`` subcommand
(``add_arguments`` and ``run`` of :mod:`xylen.cli.run`, :mod:`xylen.cli.model_server` or
:mod:`xylen.cli.paper_exchange`), plus the options the ``xylen`` command takes before the
subcommand (``--home``, ``--log-level``, ``--log-format``).

Exit status: what ``run`` returns (0 after a graceful shutdown); a :class:`~xylen.errors.XylenError`
prints one line and exits with its code (2 for bad usage or a bad config); Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from xylen.errors import XylenError
from xylen.logs import setup_logging

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("auto", "text", "json")


def service_main(
    argv: Sequence[str] | None,
    *,
    name: str,
    description: str | None,
    home_help: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], int],
) -> int:
    """Parse ``argv`` for ``python -m name``, set up logging, and run."""
    parser = argparse.ArgumentParser(prog=f"python -m {name}", description=description)
    parser.add_argument("--home", default=None, help=home_help)
    parser.add_argument("--log-level", default=None, choices=LOG_LEVELS, help="default INFO, or the config's")
    parser.add_argument(
        "--log-format", default=None, choices=LOG_FORMATS, help="default auto, or the config's"
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    setup_logging(args.log_level or "INFO", args.log_format or "auto")
    try:
        return run(args)
    except XylenError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
