"""The arguments every command over a span of history takes (backtest, look-ahead analysis, optimize)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_span_arguments(parser: argparse.ArgumentParser, start_example: str, end_example: str) -> None:
    """``--from``/``--to`` (the span), ``--config``, ``--symbol``, ``--interval`` and ``--data``."""
    parser.add_argument("--from", dest="start", required=True, help=f"first candle, e.g. {start_example}")
    parser.add_argument("--to", dest="end", required=True, help=f"end (exclusive), e.g. {end_example}")
    parser.add_argument("--config", type=Path, default=None, help="config.yaml (default: embedded defaults)")
    parser.add_argument("--symbol", default=None, help="symbol (default: the config's first)")
    parser.add_argument("--interval", default="5m", help="base candle interval (default 5m)")
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="candle store folder or candle file (default: the shipped data)",
    )
