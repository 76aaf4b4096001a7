"""The config schema: frozen pydantic models, unknown keys refused, units in field names.

Every field has a safe default, so an empty file (or none) is a valid paper-trading
config on 127.0.0.1.  Secrets are never part of this schema: they come from the
environment (see :mod:`xylen.config.secrets`), and a secret-looking key in the file
is refused with a message saying so.
"""

from __future__ import annotations

from enum import Enum
from types import UnionType
from typing import Annotated, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from xylen.data.schema import interval_ms

PositiveFloat = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(gt=0, le=1)]
Port = Annotated[int, Field(ge=1, le=65535)]
Bps = Annotated[float, Field(ge=0, le=1000)]

SECRET_KEYS = frozenset(
    {"api_key", "api_secret", "secret", "secret_key", "token", "password", "model_token", "dashboard_token"}
)


def _scalar_kind(annotation: object) -> str | None:
    """``"bool"`` or ``"number"`` for fields of those types (``X | None`` included), else ``None``."""
    if annotation is bool:
        return "bool"
    if annotation in (int, float):
        return "number"
    args = [a for a in get_args(annotation) if a is not type(None)]
    if get_origin(annotation) in (Union, UnionType) and len(args) == 1:
        return _scalar_kind(args[0])
    return None


class Section(BaseModel):
    """Base of every config section: frozen, strict about unknown keys and about scalar types.

    A limit can never be switched off by accident: infinities and NaN are refused for every number
    (``allow_inf_nan``), a boolean must be ``true`` or ``false`` (not ``1`` or ``"yes"``), and a
    number must be a number (not ``true``, which YAML would make 1, nor a quoted string).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _strict_scalars(cls, data: object) -> object:
        if not isinstance(data, dict):
            return data
        for key, value in data.items():
            field = cls.model_fields.get(key) if isinstance(key, str) else None
            if field is None or value is None:  # unknown keys and nulls get pydantic's own errors
                continue
            kind = _scalar_kind(field.annotation)
            if kind == "bool" and not isinstance(value, bool):
                raise ValueError(f"{key}: must be true or false (got {value!r})")
            if kind == "number" and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise ValueError(f"{key}: must be a number (got {value!r})")
        return data

    @model_validator(mode="before")
    @classmethod
    def _no_secrets_in_file(cls, data: object) -> object:
        if isinstance(data, dict):
            for key in data:
                if isinstance(key, str) and key.lower() in SECRET_KEYS:
                    raise ValueError(
                        f"{key}: is a secret; secrets are read from the environment "
                        "(see DOCUMENTATION.md, 'Secrets'), never from the config file"
                    )
        return data


class ExchangeMode(str, Enum):
    PAPER = "paper"
    TESTNET = "testnet"
    LIVE = "live"


class ExchangeConfig(Section):
    mode: ExchangeMode = ExchangeMode.PAPER
    confirm_live: bool = False
    paper_url: str = "http://127.0.0.1:9000"
    testnet_url: str = "https://demo-fapi.binance.com"
    live_url: str = "https://fapi.binance.com"
    recv_window_ms: int = Field(5000, ge=1, le=60000)
    request_timeout_seconds: PositiveFloat = 10.0
    margin_mode: Literal["isolated", "cross"] = "isolated"
    leverage: int = Field(2, ge=1, le=125)
    poll_interval_seconds: PositiveFloat = 10.0

    @field_validator("paper_url", "testnet_url", "live_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _live_needs_confirmation(self) -> ExchangeConfig:
        if self.mode is ExchangeMode.LIVE and not self.confirm_live:
            raise ValueError(
                "confirm_live: mode 'live' trades real money; set exchange.confirm_live: true to allow it"
            )
        return self

    @property
    def base_url(self) -> str:
        return {
            ExchangeMode.PAPER: self.paper_url,
            ExchangeMode.TESTNET: self.testnet_url,
            ExchangeMode.LIVE: self.live_url,
        }[self.mode]


def _check_interval(value: str) -> str:
    interval_ms(value)  # raises ValueError with the reason
    return value


class MarketConfig(Section):
    symbols: list[str] = Field(default_factory=lambda: ["BTCUSDT"], min_length=1)
    base_interval: str = "5m"
    higher_intervals: list[str] = Field(default_factory=lambda: ["15m", "1h"])
    history_candles: int = Field(4000, ge=1000, le=100_000)

    @field_validator("symbols")
    @classmethod
    def _symbols(cls, value: list[str]) -> list[str]:
        for symbol in value:
            if not symbol.isalnum() or not symbol.isupper():
                raise ValueError(f"symbol {symbol!r} must be upper-case letters and digits, e.g. BTCUSDT")
        if len(set(value)) != len(value):
            raise ValueError("symbols must be unique")
        return value

    @field_validator("base_interval")
    @classmethod
    def _base(cls, value: str) -> str:
        return _check_interval(value)

    @field_validator("higher_intervals")
    @classmethod
    def _higher(cls, value: list[str]) -> list[str]:
        return [_check_interval(v) for v in value]

    @model_validator(mode="after")
    def _multiples(self) -> MarketConfig:
        base = interval_ms(self.base_interval)
        for interval in self.higher_intervals:
            if interval_ms(interval) <= base or interval_ms(interval) % base:
                raise ValueError(
                    f"higher_intervals: {interval} is not a multiple of base_interval {self.base_interval}"
                )
        return self


class HeartbeatConfig(Section):
    interval_seconds: PositiveFloat = 60.0
    deadline_seconds: PositiveFloat = 20.0
    clock: Literal["wall", "accelerated", "instant"] = "wall"
    speed: PositiveFloat = 1.0

    @model_validator(mode="after")
    def _deadline_inside_beat(self) -> HeartbeatConfig:
        if self.deadline_seconds >= self.interval_seconds:
            raise ValueError("deadline_seconds: must be shorter than interval_seconds")
        return self


class ModelServerConfig(Section):
    id: str = Field(min_length=1, max_length=64)
    url: str
    weight: float = Field(1.0, ge=0)
    timeout_ms: int = Field(2000, ge=10, le=60_000)
    enabled: bool = True
    # Symbols this server is asked about (None: all its model answers for, as its /health says).
    symbols: list[str] | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


def _default_servers() -> list[ModelServerConfig]:
    return [ModelServerConfig(id="local-lgbm", url="http://127.0.0.1:8001")]


class EnsembleConfig(Section):
    quorum: int = Field(1, ge=1)
    min_edge: float = Field(0.02, ge=0, lt=0.5)
    max_disagreement: float = Field(0.15, gt=0, le=0.5)
    calibration_min_samples: int = Field(200, ge=20)
    calibration_refit_hours: PositiveFloat = 24.0
    uncalibrated_shrink: float = Field(0.5, ge=0, le=1)
    weight_half_life_hours: PositiveFloat = 72.0
    base_rate_half_life_hours: PositiveFloat = 720.0
    base_rate_prior: float = Field(1000.0, gt=0)
    weight_learning_rate: PositiveFloat = 1.0
    pooling: Literal["skill", "log_odds"] = "skill"
    weight_new_model_prior: float = Field(0.1, gt=0, le=1)
    pool_calibration_prior: float = Field(1000.0, ge=1)
    pool_refit_every: int = Field(32, ge=1)
    meta_learner: bool = False


class RiskConfig(Section):
    sizing: Literal["fixed_fraction", "kelly", "fixed_amount"] = "kelly"
    fixed_fraction: Fraction = 0.01
    kelly_fraction: Fraction = 0.25
    max_position_fraction: Fraction = 0.10
    fixed_amount_usd: PositiveFloat = 100.0
    max_leverage: int = Field(3, ge=1, le=125)
    daily_loss_limit_pct: float = Field(2.0, gt=0, le=100)
    daily_loss_limit_usd: PositiveFloat = 200.0
    max_open_positions: int = Field(2, ge=1)
    max_exposure_per_symbol_usd: PositiveFloat = 2_000.0
    max_total_exposure_usd: PositiveFloat = 4_000.0
    max_orders_per_minute: int = Field(10, ge=1)
    cooldown_after_loss_seconds: float = Field(900.0, ge=0)
    max_snapshot_age_seconds: PositiveFloat = 90.0
    max_mark_last_divergence_bps: Bps = 50.0
    breaker_consecutive_losses: int = Field(3, ge=1)
    breaker_max_drawdown_pct: float = Field(10.0, gt=0, le=100)
    breaker_error_burst: int = Field(5, ge=1)
    breaker_error_window_seconds: PositiveFloat = 60.0
    breaker_quorum_misses: int = Field(3, ge=1)
    breaker_base_cooldown_seconds: PositiveFloat = 900.0
    breaker_clean_period_seconds: PositiveFloat = 86_400.0
    daily_loss_action: Literal["block", "halt", "flatten"] = "flatten"
    breaker_halt_level: int = Field(3, ge=0)
    breaker_halt_action: Literal["halt", "flatten"] = "halt"

    @model_validator(mode="after")
    def _exposures(self) -> RiskConfig:
        if self.max_exposure_per_symbol_usd > self.max_total_exposure_usd:
            raise ValueError("max_exposure_per_symbol_usd: cannot exceed max_total_exposure_usd")
        return self


class TradingConfig(Section):
    enabled: bool = True
    horizon_minutes: int = Field(60, ge=1)
    entry: Literal["market", "limit", "maker_preferred"] = "maker_preferred"
    maker_timeout_seconds: PositiveFloat = 30.0
    max_order_age_seconds: PositiveFloat | None = None
    taker_fee_bps: Bps = 5.0
    maker_fee_bps: float = Field(2.0, ge=-10, le=1000)
    slippage_bps: Bps = 1.0
    latency_ms: int = Field(0, ge=0, le=60_000)
    stop_atr_multiple: PositiveFloat = 1.5
    take_profit_atr_multiple: PositiveFloat = 2.0


class DataConfig(Section):
    source_dir: str | None = None
    mirror: str = "https://data.binance.vision"
    market: Literal["um", "spot", "cm"] = "um"
    download_workers: int = Field(4, ge=1, le=16)
    compression: Literal["gzip", "zstd"] = "gzip"


class StorageConfig(Section):
    home: str = "data"
    backup_keep: int = Field(7, ge=1)
    backup_hour_utc: int = Field(0, ge=0, le=23)


class MonitoringConfig(Section):
    metrics_host: str = "127.0.0.1"
    metrics_port: Port = 9108


class DashboardConfig(Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: Port = 8765
    require_token: bool = True


class LoggingConfig(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["auto", "text", "json"] = "auto"
    file: str | None = None


class XylenConfig(Section):
    """The whole ``config.yaml``."""

    exchange: ExchangeConfig = Field(default_factory=ExchangeConfig)
    market: MarketConfig = Field(default_factory=MarketConfig)
    heartbeat: HeartbeatConfig = Field(default_factory=HeartbeatConfig)
    model_servers: list[ModelServerConfig] = Field(default_factory=_default_servers)
    ensemble: EnsembleConfig = Field(default_factory=EnsembleConfig)
    risk: RiskConfig = Field(default_factory=RiskConfig)
    trading: TradingConfig = Field(default_factory=TradingConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    dashboard: DashboardConfig = Field(default_factory=DashboardConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)

    @field_validator("model_servers")
    @classmethod
    def _unique_ids(cls, value: list[ModelServerConfig]) -> list[ModelServerConfig]:
        ids = [s.id for s in value]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"model server ids must be unique, repeated: {', '.join(dup)}")
        return value

    @model_validator(mode="after")
    def _cross_section(self) -> XylenConfig:
        enabled = sum(1 for s in self.model_servers if s.enabled)
        if self.ensemble.quorum > enabled:
            raise ValueError(
                f"ensemble.quorum: is {self.ensemble.quorum} but only {enabled} model server(s) are enabled"
            )
        if self.exchange.leverage > self.risk.max_leverage:
            raise ValueError(
                f"exchange.leverage: {self.exchange.leverage} exceeds "
                f"risk.max_leverage {self.risk.max_leverage}"
            )
        return self
