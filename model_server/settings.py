"""Settings of one model host, read like ``config.yaml``: validated at start, one line per error.

Sources, strongest first: command-line flags, the environment, an env file (``--env-file``, see
``model_server/models.env.example`` for every key with 8/16/32 GB profile values).  Keys are the
upper-case field names (``MODEL_PATH``, ``MAX_QUEUE_DEPTH``, ...); an unknown key in the env file
is refused so a typo never silently falls back to a default.  A bad value raises
:class:`xylen.errors.ConfigError` naming the key (the command line exits 2).

An env file written for the 0.0.1-alpha server also loads: its keys with a meaning here are
mapped (:data:`ALPHA_MAPPED`, a key of this server in the same file wins), the others are ignored
with one warning naming them (never their values).  ``MODEL_PATH`` may name a single
``model.txt`` / ``model.onnx``: the model directory is its folder, which must hold ``metadata.json``.
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from xylen.config.loader import format_validation_error
from xylen.config.secrets import load_secrets
from xylen.errors import ConfigError
from xylen.paths import Home

logger = logging.getLogger(__name__)

ALPHA_MAPPED = {
    "SERVER_HOST": "HOST",
    "SERVER_PORT": "PORT",
    "MODEL_NAME": "MODEL_ID",
    "ONNX_ENABLED": "MODEL_TYPE (onnx when true)",
    "FULL_RETRAIN_MIN_SAMPLES": "RETRAIN_MIN_SAMPLES",
    "MIN_SAMPLES_FOR_RETRAIN": "RETRAIN_MIN_SAMPLES (when FULL_RETRAIN_MIN_SAMPLES is absent)",
    "RETRAIN_MIN_FREE_MEMORY_GB": "MIN_FREE_MEMORY_MB (x 1024)",
    "RATE_LIMIT_REQUESTS_PER_MINUTE": "RATE_LIMIT_PER_SECOND (/ 60, when RATE_LIMIT_ENABLED is true)",
    "RATE_LIMIT_ENABLED": "RATE_LIMIT_PER_SECOND (0 when false)",
    "API_KEY": "XYLEN_MODEL_TOKEN (when ENABLE_API_KEY_AUTH is true)",
    "ENABLE_API_KEY_AUTH": "XYLEN_MODEL_TOKEN",
}
"""0.0.1-alpha ``models.env`` keys with a meaning here, and what they set.  The alpha's
``MODEL_TYPE``, ``MODEL_PATH``, ``LGBM_NUM_THREADS``, ``LGBM_MAX_MEMORY_GB`` and
``RATE_LIMIT_BURST`` keep their names and meaning."""

ALPHA_IGNORED = frozenset(
    [
        "MODEL_FORMAT",
        "ONNX_MODEL_PATH",
        "ONNX_PROVIDERS",
        "ONNX_FALLBACK_TO_LIGHTGBM",
        "MODEL_VERSION",
        "MODEL_REGISTRY_PATH",
        "SERVER_WORKERS",
        "SERVER_LOG_LEVEL",
        "SERVER_RELOAD",
        "FEATURE_COUNT",
        "FEATURE_ENGINEERING_ENABLED",
        "FEATURE_VALIDATION_STRICT",
        "FEATURE_SCALER_PATH",
        "FEATURE_SCALER_TYPE",
        "DATA_PATH",
        "FEATURE_STORE_PATH",
        "TRAINING_DATA_PATH",
        "FEEDBACK_BUFFER_PATH",
        "MODEL_CHECKPOINTS_PATH",
        "RETRAINING_ENABLED",
        "RETRAINING_METHOD",
        "INCREMENTAL_LEARNING_BACKEND",
        "INCREMENTAL_LEARNING_RATE",
        "MAX_FEEDBACK_BUFFER_SIZE",
        "FULL_RETRAIN_ENABLED",
        "FULL_RETRAIN_SCHEDULE",
        "RETRAIN_MAX_SWAP_PERCENT",
        "RETRAIN_TIMEOUT_SECONDS",
        "LGBM_MAX_BIN",
        "LGBM_NUM_LEAVES",
        "LGBM_LEARNING_RATE",
        "LGBM_N_ESTIMATORS",
        "DATA_COLLECTION_ENABLED",
        "COLLECTION_INTERVAL",
        "COLLECTION_SYMBOL",
        "COLLECTION_TIMEFRAMES",
        "LOOKBACK_PERIODS",
        "BINANCE_API_KEY",
        "BINANCE_API_SECRET",
        "BINANCE_TESTNET",
        "BINANCE_BASE_URL",
        "PROMETHEUS_ENABLED",
        "PROMETHEUS_PORT",
        "PROMETHEUS_PATH",
        "EXPOSE_MODEL_METRICS",
        "EXPOSE_INFERENCE_LATENCY",
        "EXPOSE_MEMORY_USAGE",
        "EXPOSE_PREDICTION_DISTRIBUTION",
        "LOG_PATH",
        "LOG_FORMAT",
        "LOG_MAX_BYTES",
        "LOG_BACKUP_COUNT",
        "BATCH_INFERENCE_ENABLED",
        "BATCH_MAX_SIZE",
        "BATCH_TIMEOUT_MS",
        "PRELOAD_MODEL_AT_STARTUP",
        "MODEL_CACHE_ENABLED",
        "FEATURE_CACHE_TTL_SECONDS",
        "ASYNC_INFERENCE",
        "INFERENCE_THREAD_POOL_SIZE",
        "HEALTH_CHECK_ENABLED",
        "HEALTH_CHECK_MODEL_LOAD",
        "HEALTH_CHECK_MEMORY_THRESHOLD_GB",
        "HEALTH_CHECK_DISK_THRESHOLD_GB",
    ]
)
"""0.0.1-alpha ``models.env`` keys without a meaning here (accepted, named in one warning).
``SERVER_LOG_LEVEL`` and ``LOG_FORMAT`` are the ``--log-level`` and ``--log-format`` options."""

MODEL_FILES = ("model.txt", "model.onnx")


def _true(value: Any) -> bool:
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


def translate_alpha(data: dict[str, Any], fields: frozenset[str]) -> tuple[dict[str, Any], list[str]]:
    """Env-file values (lower-case keys) with the alpha's keys mapped to this server's fields.

    Returns the values and the alpha keys ignored (no meaning here, or a key of this server in
    the same file set that field).  Keys neither of this server nor of the alpha stay, so
    validation refuses them by name.
    """
    alpha = {
        k.upper(): v
        for k, v in data.items()
        if k not in fields and k.upper() in {*ALPHA_MAPPED, *ALPHA_IGNORED}
    }
    out = {k: v for k, v in data.items() if k.upper() not in alpha}
    used: set[str] = set()

    def put(field: str, value: Any, *keys: str) -> None:
        if field not in out:
            out[field] = value
            used.update(keys)

    def number(key: str, scale: float) -> Any:
        try:
            return float(alpha[key]) * scale
        except ValueError:
            return alpha[key]  # left as given: validation names the field it was meant for

    for key, field in (("SERVER_HOST", "host"), ("SERVER_PORT", "port"), ("MODEL_NAME", "model_id")):
        if key in alpha:
            put(field, alpha[key], key)
    if _true(alpha.get("ONNX_ENABLED", "")):
        put("model_type", "onnx", "ONNX_ENABLED")
    for key in ("FULL_RETRAIN_MIN_SAMPLES", "MIN_SAMPLES_FOR_RETRAIN"):
        if key in alpha:
            put("retrain_min_samples", alpha[key], key)
    if "RETRAIN_MIN_FREE_MEMORY_GB" in alpha:
        put("min_free_memory_mb", number("RETRAIN_MIN_FREE_MEMORY_GB", 1024.0), "RETRAIN_MIN_FREE_MEMORY_GB")
    if "RATE_LIMIT_ENABLED" in alpha:
        keys = ("RATE_LIMIT_ENABLED", "RATE_LIMIT_REQUESTS_PER_MINUTE")
        if not _true(alpha["RATE_LIMIT_ENABLED"]):
            put("rate_limit_per_second", 0.0, *keys)
        elif "RATE_LIMIT_REQUESTS_PER_MINUTE" in alpha:
            put("rate_limit_per_second", number("RATE_LIMIT_REQUESTS_PER_MINUTE", 1 / 60), *keys)
    if _true(alpha.get("ENABLE_API_KEY_AUTH", "")) and "API_KEY" in alpha:
        put("xylen_model_token", alpha["API_KEY"], "ENABLE_API_KEY_AUTH", "API_KEY")
    return out, sorted(k for k in alpha if k not in used)


class AlphaEnvFile(PydanticBaseSettingsSource):
    """The env-file source, with a 0.0.1-alpha file's keys mapped (:func:`translate_alpha`)."""

    def __init__(self, settings_cls: type[BaseSettings], env_file: PydanticBaseSettingsSource) -> None:
        super().__init__(settings_cls)
        self.env_file = env_file

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ answers for the whole file

    def __call__(self) -> dict[str, Any]:
        data, ignored = translate_alpha(self.env_file(), frozenset(self.settings_cls.model_fields))
        if ignored:
            logger.warning(
                "env file: %d key(s) of the 0.0.1-alpha server have no meaning here and are ignored: %s",
                len(ignored),
                ", ".join(ignored),
            )
        return data


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

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The usual order (flags, environment, env file, secrets); the env file may be the alpha's."""
        return init_settings, env_settings, AlphaEnvFile(settings_cls, dotenv_settings), file_secret_settings

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
    if settings.model_path is not None and settings.model_path.is_file():
        settings = settings.model_copy(update={"model_path": model_dir_of_file(settings.model_path, source)})
    if settings.token is None and not is_loopback(settings.host):
        raise ConfigError(
            "XYLEN_MODEL_TOKEN", f"required when HOST ({settings.host}) is not loopback", source
        )
    return settings


def model_dir_of_file(path: Path, source: str) -> Path:
    """The model directory of a ``MODEL_PATH`` naming one model file (as the alpha's did)."""
    if path.suffix not in {".txt", ".onnx"}:
        raise ConfigError(
            "MODEL_PATH",
            f"{path} is a file: give a model directory, a folder of them, or its model.txt",
            source,
        )
    folder = path.parent
    if not (folder / "metadata.json").is_file():
        raise ConfigError(
            "MODEL_PATH",
            f"{path} has no metadata.json beside it: a model is a directory holding model.txt and/or "
            "model.onnx and the metadata.json naming its feature_version, features, symbols and label; "
            "a 0.0.1-alpha model was trained on other features, so train one with `xylen train` "
            "(it writes the whole directory) and point MODEL_PATH at that directory or its model.txt",
            source,
        )
    if path.name not in MODEL_FILES:
        raise ConfigError(
            "MODEL_PATH",
            f"{path}: the server loads {' or '.join(MODEL_FILES)} from {folder}: rename {path.name} to "
            f"model{path.suffix}",
            source,
        )
    return folder
