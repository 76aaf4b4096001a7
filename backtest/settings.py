"""The config a backtest runs with: the user's ``config.yaml`` or embedded defaults.

Defaults (no ``--config``): the paper venue with the demo's settings and the config schema's own
defaults for the ensemble, risk and trading sections (costs included).  In the fast fidelity the
configured ``model_servers`` are replaced by the in-process models (ids ``bt-...``/``wf-...``, weight
1 each), so the ensemble weighs exactly the models that vote; other sections are the config's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from xylen.config import XylenConfig, load_config
from xylen.config.loader import parse_config
from xylen.config.schema import ModelServerConfig
from xylen.errors import ConfigError, UsageError

IN_PROCESS_URL = "http://127.0.0.1:9"  # never called: in-process models are asked directly


def default_config_data(symbol: str) -> dict[str, Any]:
    """The embedded defaults as config data (module docstring)."""
    return {
        "exchange": {"mode": "paper", "paper_url": IN_PROCESS_URL},
        "market": {"symbols": [symbol]},
        "heartbeat": {"interval_seconds": 300.0, "clock": "instant"},
        "risk": {"max_snapshot_age_seconds": 900.0},
        "logging": {"level": "WARNING", "format": "text"},
    }


def load(config_path: Path | None, symbol: str) -> XylenConfig:
    """The config file's settings (exit 2 naming the key when invalid), or the defaults."""
    if config_path is None:
        return parse_config(default_config_data(symbol), "backtest defaults")
    if not config_path.is_file():
        raise UsageError(f"--config {config_path}: no such file")
    try:
        return load_config(config_path)
    except ConfigError as exc:
        raise UsageError(f"--config {config_path}: {exc}") from exc


def with_models(config: XylenConfig, model_ids: Sequence[str]) -> XylenConfig:
    """``config`` whose model servers are the in-process models (module docstring)."""
    servers = [ModelServerConfig(id=m, url=IN_PROCESS_URL) for m in model_ids]
    return config.model_copy(update={"model_servers": servers})


def with_symbol(config: XylenConfig, symbol: str) -> XylenConfig:
    """``config`` trading ``symbol`` only."""
    market = config.market.model_copy(update={"symbols": [symbol]})
    return config.model_copy(update={"market": market})
