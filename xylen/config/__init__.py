"""Configuration: schema, loading and secrets."""

from xylen.config.loader import load_config, parse_config
from xylen.config.schema import ExchangeMode, ModelServerConfig, XylenConfig
from xylen.config.secrets import Secrets, load_secrets

__all__ = [
    "ExchangeMode",
    "ModelServerConfig",
    "Secrets",
    "XylenConfig",
    "load_config",
    "load_secrets",
    "parse_config",
]
