"""``xylen config check|show``: validate a config file and print the effective settings."""

from __future__ import annotations

import argparse
from typing import Any

import yaml

from xylen.config import load_config, load_secrets


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("config", help="validate or show a config file")
    inner = parser.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = inner.add_parser("check", help="validate a config file (exit 2 naming the bad key)")
    check.add_argument("--config", default=None, help="config file (default: embedded defaults)")
    check.set_defaults(func=run_check)
    show = inner.add_parser("show", help="print the effective config as YAML (secrets never shown)")
    show.add_argument("--config", default=None, help="config file (default: embedded defaults)")
    show.set_defaults(func=run_show)


def run_check(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    secrets = load_secrets()
    enabled = [s.id for s in config.model_servers if s.enabled]
    print(
        f"config OK: mode {config.exchange.mode.value} at {config.exchange.base_url}, "
        f"symbols {','.join(config.market.symbols)} on {config.market.base_interval}, "
        f"{len(enabled)} model server(s) enabled"
    )
    if config.exchange.mode.value != "paper" and secrets.binance_api_key is None:
        print("note: BINANCE_API_KEY / BINANCE_API_SECRET are not set; they are needed for this mode")
    return 0


def run_show(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    print(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), end="")
    return 0
