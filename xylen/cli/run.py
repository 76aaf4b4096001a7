"""``xylen run [--config config.yaml] [--beats N]``: the coordinator.

Runs until SIGINT/SIGTERM (exit 0 after a clean stop) or, with ``--beats N``, for N beats.  A bad
config exits 2 with one line naming the key; a runtime failure exits 1.  See :mod:`coordinator.app`.
"""

from __future__ import annotations

import argparse
from typing import Any

from xylen.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``xylen run`` (also those of ``python -m coordinator``)."""
    parser.add_argument(
        "--config", default=None, metavar="FILE", help="config.yaml (default: embedded defaults)"
    )
    parser.add_argument(
        "--beats", type=int, default=None, metavar="N", help="stop after N beats (default: run)"
    )


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("run", help="run the coordinator", description=__doc__)
    add_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Start the coordinator with the parsed arguments; returns the exit status."""
    if args.beats is not None and args.beats < 1:
        raise UsageError("--beats: must be at least 1")
    from coordinator.app import run_coordinator  # imported here: `xylen --help` stays fast

    return run_coordinator(
        args.config,
        getattr(args, "home", None),
        args.beats,
        log_level=getattr(args, "log_level", None),
        log_format=getattr(args, "log_format", None),
    )
