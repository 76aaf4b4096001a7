"""Secrets: from the environment, or from a dotenv-style file readable by its owner only.

Values are ``SecretStr`` so they never appear in logs, reprs or ``model_dump``; nothing
here writes them anywhere.  A secrets file (``XYLEN_SECRETS_FILE`` or ``--secrets``) must
have mode 600 (no group or other permission bits) or it is refused; the environment
wins over the file.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, SecretStr

from xylen.errors import ConfigError

SECRETS_FILE_ENV = "XYLEN_SECRETS_FILE"
DEFAULT_PAPER_API_KEY = "xylen-paper-key"
DEFAULT_PAPER_API_SECRET = "xylen-paper-secret"  # nosec B105 # documented local default, paper venue only

ENV_NAMES: dict[str, str] = {
    "binance_api_key": "BINANCE_API_KEY",
    "binance_api_secret": "BINANCE_API_SECRET",  # nosec B105 # a variable's name, not a secret
    "paper_api_key": "XYLEN_PAPER_API_KEY",
    "paper_api_secret": "XYLEN_PAPER_API_SECRET",  # nosec B105 # a variable's name, not a secret
    "model_token": "XYLEN_MODEL_TOKEN",  # nosec B105 # a variable's name, not a secret
    "dashboard_token": "XYLEN_DASHBOARD_TOKEN",  # nosec B105 # a variable's name, not a secret
}


class Secrets(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    binance_api_key: SecretStr | None = None
    binance_api_secret: SecretStr | None = None
    paper_api_key: SecretStr = SecretStr(DEFAULT_PAPER_API_KEY)
    paper_api_secret: SecretStr = SecretStr(DEFAULT_PAPER_API_SECRET)
    model_token: SecretStr | None = None
    dashboard_token: SecretStr | None = None


def read_secrets_file(path: Path) -> dict[str, str]:
    """Parse ``NAME=value`` lines (``#`` comments, blank lines, optional quotes)."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError(SECRETS_FILE_ENV, f"cannot read {path}: {exc.strerror}", "secrets") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            SECRETS_FILE_ENV,
            f"{path} has mode {stat.S_IMODE(mode):03o}; secrets files must be mode 600 (chmod 600 {path})",
            "secrets",
        )
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"{path.name}:{number}", "expected NAME=value", "secrets")
        values[name.strip()] = value.strip().strip("'\"")
    return values


def load_secrets(env: Mapping[str, str] | None = None, secrets_file: Path | None = None) -> Secrets:
    """Collect secrets from ``env`` (default ``os.environ``) over an optional secrets file."""
    environ = dict(os.environ if env is None else env)
    file_path = secrets_file or (Path(environ[SECRETS_FILE_ENV]) if environ.get(SECRETS_FILE_ENV) else None)
    merged: dict[str, str] = read_secrets_file(file_path) if file_path else {}
    merged.update({k: v for k, v in environ.items() if v})
    fields = {field: SecretStr(merged[name]) for field, name in ENV_NAMES.items() if merged.get(name)}
    return Secrets(**fields)
