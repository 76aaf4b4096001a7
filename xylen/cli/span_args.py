"""The arguments every command over a span of history takes (backtest, look-ahead analysis, optimize)."""

from __future__ import annotations

import argparse
from pathlib import Path

from xylen.errors import UsageError


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


def base_interval_ms(interval: str) -> int:
    """``--interval`` in milliseconds, checked: a Binance interval the feature set can be computed on
    (its higher timeframes must be whole multiples of it); otherwise a usage error naming the flag."""
    from xylen.data.schema import interval_ms
    from xylen.features.spec import feature_specs

    try:
        step = interval_ms(interval)
        feature_specs(interval)
    except ValueError as exc:
        raise UsageError(f"--interval {interval}: {exc}") from exc
    return step
