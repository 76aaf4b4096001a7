#!/usr/bin/env python3
"""Run ``xylen preflight`` with the given arguments and exit with its status.

For hosts and CI jobs that call scripts rather than the ``xylen`` command, e.g.
``scripts/preflight_check.py --home /opt/xylen/home --config /opt/xylen/config.yaml``
(``--home`` and the logging options go before the subcommand, the rest after it).
"""

from __future__ import annotations

import sys

from xylen.cli.main import main

GLOBAL_OPTIONS = ("--home", "--log-level", "--log-format")


def split(argv: list[str]) -> tuple[list[str], list[str]]:
    """The top-level options (with their values) and the preflight's own arguments."""
    top: list[str] = []
    rest: list[str] = []
    items = iter(argv)
    for arg in items:
        name = arg.split("=", 1)[0]
        if name in GLOBAL_OPTIONS:
            top.append(arg)
            if "=" not in arg:
                top.append(next(items, ""))
        else:
            rest.append(arg)
    return top, rest


if __name__ == "__main__":
    top, rest = split(sys.argv[1:])
    sys.exit(main([*top, "preflight", *rest]))
