"""The wire contract between the coordinator and the model servers, version ``v1``.

Both sides import these models, so a field renamed on one side fails both test suites.  Requests
are parsed from raw bytes with ``model_validate_json`` (about half the CPU of FastAPI's default
JSON-then-validate path); candles travel as plain arrays ``[open_time, open, high, low, close,
volume]``, oldest first, closed candles only.  Unknown fields are refused (422), so a typo never
silently drops data.  ``ModelMetadata`` is the ``metadata.json`` of a model directory.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

CONTRACT_VERSION = "v1"
Action = Literal["LONG", "SHORT", "HOLD"]
Backend = Literal["lightgbm", "onnx", "river"]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Candle = tuple[int, float, float, float, float, float]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _finite_features(value: dict[str, float]) -> dict[str, float]:
    """Refuse NaN and infinities (JSON parsing accepts ``NaN`` and ``Infinity``): a model never
    learns from, or answers for, a row it could not have been trained on."""
    bad = [k for k, v in value.items() if not math.isfinite(v)]
    if bad:
        raise ValueError(f"non-finite feature values: {', '.join(sorted(bad)[:5])}")
    return value


class PredictRequest(_Wire):
    request_id: str = Field(min_length=1, max_length=64)
    symbol: str = Field(min_length=1, max_length=32, pattern=r"^[A-Z0-9]+$")
    timeframe: str = Field(min_length=2, max_length=4)
    timestamp: int = Field(ge=0, description="close time (ms UTC) of the newest candle")
    candles: list[Candle] = Field(default_factory=list, max_length=5000)
    features: dict[str, float] = Field(default_factory=dict)
    feature_version: str = Field(min_length=1, max_length=16)
    meta: dict[str, str | float | int | bool] = Field(default_factory=dict)

    _finite = field_validator("features")(_finite_features)

    @model_validator(mode="after")
    def _some_input(self) -> PredictRequest:
        if not self.features and not self.candles:
            raise ValueError("either features or candles must be given")
        return self


class PredictResponse(_Wire):
    request_id: str
    model_id: str
    model_version: str
    backend: Backend
    action: Action
    prob_up: Probability
    confidence: Probability
    raw_score: float
    stop_loss: float | None = None
    take_profit: float | None = None
    latency_ms: float = Field(ge=0.0)


class Outcome(_Wire):
    request_id: str = Field(min_length=1, max_length=64)
    timestamp: int = Field(ge=0)
    features: dict[str, float]
    label: Literal[0, 1]
    pnl: float | None = Field(None, allow_inf_nan=False)

    _finite = field_validator("features")(_finite_features)


class RetrainRequest(_Wire):
    outcomes: list[Outcome] = Field(min_length=1, max_length=10_000)
    feature_version: str = Field(min_length=1, max_length=16)


class RetrainResponse(_Wire):
    status: Literal["accepted", "rejected"]
    samples_received: int
    buffer_size: int
    retrain_scheduled: bool


class HealthResponse(BaseModel):
    """``GET /health``.  Unknown fields are ignored (not refused), so a server may add fields
    without breaking the clients that do not know them; the online-learning fields are left out
    of the body by a server that does not learn online."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    status: Literal["ok", "degraded", "loading"]
    uptime_seconds: float
    memory_usage_mb: float
    model_loaded: bool
    model_type: Backend | None
    model_version: str | None
    last_trained: int | None = Field(None, description="ms UTC when the serving model was trained")
    online_outcomes: int | None = Field(
        None, description="outcomes the online model has scored (predict, then learn) and learned"
    )
    prequential_log_loss: float | None = Field(
        None, description="decayed mean log-loss (nats) of the online model's answers before each outcome"
    )
    constant_log_loss: float | None = Field(
        None, description="the same for the constant predictor (the running base rate)"
    )
    online_answering: Literal["model", "base_rate"] | None = Field(
        None, description="whether the online model answers itself or the base rate (no skill shown yet)"
    )
    symbols: list[str] | None = Field(
        None, description="symbols the serving model answers for; empty: any (not bound to one market)"
    )
    interval: str | None = Field(None, description="candle interval the serving model was trained on")
    horizon_bars: int | None = Field(None, description="label horizon in bars of interval (xylen.labels)")
    label_band: float | None = Field(
        None, description="no-trade band (fraction): outcomes with |return| <= band are not learned"
    )
    recalibration_intercept: float | None = Field(
        None, description="batch model: a of the served sigmoid(a + b logit(p)), learned from outcomes"
    )
    recalibration_slope: float | None = Field(None, description="batch model: b of the same map")
    recalibration_outcomes: int | None = Field(
        None, description="batch model: outcomes (after its training span) the offset was fitted on"
    )


class ModelMetadata(BaseModel):
    """``metadata.json`` written beside ``model.txt`` / ``model.onnx`` by ``xylen train``."""

    model_config = ConfigDict(extra="allow", frozen=True)

    model_version: str = Field(description="e.g. 20240201T000000Z, unique per training run")
    created_at: int = Field(description="ms UTC")
    feature_version: str
    feature_names: list[str]
    base_interval: str = "5m"
    symbol: str = "BTCUSDT"
    symbols: list[str] = Field(
        default_factory=list,
        description="symbols the model was trained for and answers; empty: any symbol (an online model "
        "learning from every market it is sent); absent from an older file: [symbol]",
    )
    horizon_bars: int = Field(ge=1)
    label_band: float = Field(
        0.0, ge=0, description="no-trade band of the label (xylen.labels): |return| <= band is not learned"
    )
    stop_atr_multiple: float = Field(gt=0)
    take_profit_atr_multiple: float = Field(gt=0)
    train_start: int
    train_end: int
    metrics: dict[str, float] = Field(default_factory=dict)
    library_versions: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _symbols_of_older_files(cls, data: Any) -> Any:
        """A file written before ``symbols`` existed names its one market in ``symbol``."""
        if isinstance(data, dict) and "symbols" not in data:
            return {**data, "symbols": [data.get("symbol", "BTCUSDT")]}
        return data

    def serves(self, symbol: str) -> bool:
        """True when the model answers for ``symbol`` (any symbol when ``symbols`` is empty)."""
        return not self.symbols or symbol in self.symbols
