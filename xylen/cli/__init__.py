"""The ``xylen`` command line: one module per subcommand, each with ``register(subparsers)``."""

from xylen.cli.main import main

__all__ = ["main"]
