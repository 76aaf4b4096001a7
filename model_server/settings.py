"""Settings of one model host, read like ``config.yaml``: validated at start, one line per error.

Sources, strongest first: command-line flags, the environment, an env file (``--env-file``, see
``model_server/models.env.example`` for every key with 8/16/32 GB profile values).  Keys are the
upper-case field names (``MODEL_PATH``, ``MAX_QUEUE_DEPTH``, ...); an unknown key in the env file
is refused so a typo never silently falls back to a default.  A bad value raises
:class:`xylen.errors.ConfigError` naming the key (the command line exits 2).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from xylen.config.loader import format_validation_error
from xylen.config.secrets import load_secrets
from xylen.errors import ConfigError
from xylen.paths import Home


class ServerSettings(BaseSettings):
    """Every knob of ``xylen model-server`` (env names are the field names in upper case)."""

    model_config = SettingsConfigDict(
        case_sensitive=False, extra="forbid", env_ignore_empty=True, frozen=True, validate_default=True
    )

    xylen_home: Path | None = Field(None, description="home folder (default ./data)")
    model_path: Path | None = Field(None, description="a model directory, or a folder of them")
    models_dir: Path | None = Field(None, description="folder watched for new versions")
    model_type: Literal["lightgbm", "onnx", "river"] = "lightgbm"
    model_id: str | None = Field(None, min_length=1, max_length=64)
    host: str = "127.0.0.1"
    port: int = Field(8001, ge=0, le=65535)
    lgbm_num_threads: int = Field(2, ge=1, le=256)
    lgbm_max_memory_gb: float = Field(4.0, gt=0, le=1024)
    training_interval: float = Field(3600.0, ge=0, description="seconds between scheduled retrains")
    retrain_min_samples: int = Field(1000, ge=1)
    min_free_memory_mb: float = Field(512.0, ge=0)
    memory_poll_s: float = Field(1.0, gt=0, le=60)
    max_queue_depth: int = Field(64, ge=1, le=100_000)
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024)
    rate_limit_per_second: float = Field(0.0, ge=0, description="per client address; 0 = off")
    rate_limit_burst: int = Field(200, ge=1)
    long_threshold: float = Field(0.55, gt=0, lt=1)
    short_threshold: float = Field(0.45, gt=0, lt=1)
    watch_interval_s: float = Field(5.0, ge=0, description="0 = no polling for new versions")
    keep_versions: int = Field(3, ge=1, le=50)
    canary_rows: int = Field(256, ge=8, le=10_000)
    shutdown_timeout_s: float = Field(5.0, gt=0, le=300)
    xylen_model_token: SecretStr | None = None

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not value or any(c.isspace() for c in value):
            raise ValueError("must be a host name or an IP address")
        return value

    @model_validator(mode="after")
    def _cross(self) -> ServerSettings:
        if self.short_threshold >= self.long_threshold:
            raise ValueError("short_threshold: must be below long_threshold")
        return self

    @property
    def home(self) -> Home:
        return Home.resolve(self.xylen_home)

    @property
    def watch_dir(self) -> Path:
        """The folder whose new subdirectories are new model versions."""
        if self.models_dir is not None:
            return self.models_dir
        if self.model_path is not None:
            return self.model_path.parent if (self.model_path / "metadata.json").exists() else self.model_path
        return self.home.models

    @property
    def token(self) -> str | None:
        """The bearer token: ``XYLEN_MODEL_TOKEN`` (settings, environment or secrets file)."""
        if self.xylen_model_token is not None and self.xylen_model_token.get_secret_value():
            return self.xylen_model_token.get_secret_value()
        secret = load_secrets().model_token
        return secret.get_secret_value() if secret is not None else None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_settings(env_file: Path | None = None, **overrides: Any) -> ServerSettings:
    """Settings from flags (``overrides``), the environment and ``env_file``; ConfigError if bad."""
    source = str(env_file) if env_file else "model-server"
    if env_file is not None and not env_file.is_file():
        raise ConfigError("--env-file", f"{env_file} does not exist", "model-server")
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        settings = ServerSettings(_env_file=env_file, **given)
    except ValidationError as exc:
        key, reason = format_validation_error(exc)
        raise ConfigError(key.upper(), reason, source) from None
    if settings.model_path is not None and not settings.model_path.exists():
        raise ConfigError("MODEL_PATH", f"{settings.model_path} does not exist", source)
    if settings.token is None and not is_loopback(settings.host):
        raise ConfigError(
            "XYLEN_MODEL_TOKEN", f"required when HOST ({settings.host}) is not loopback", source
        )
    return settings
