"""Requests written for the 0.0.1-alpha model server, upgraded to wire contract v1.

An alpha client sends ``{"symbol", "timeframe", "candles": [{"timestamp", "open", "high", "low",
"close", "volume"}, ...], "indicators": {...}, "meta": {...}}``: no request id, no timestamp, no
feature version, candles as objects, indicators under the alpha's own names (``rsi``,
``ema_20``, ``macd``, ...) and meta values that may be lists.  :func:`upgrade_alpha` turns such a
body into a :class:`xylen.contract.PredictRequest`:

* ``request_id``: generated (``alpha-<uuid4 hex>``) when absent;
* ``timestamp``: the close time of the newest candle (open time + interval - 1 ms), as v1 defines it
  (the current time when only indicators are given);
* ``candles``: objects (``timestamp`` or ``open_time``) or v1 arrays, sorted oldest first;
* ``features``: the ``indicators`` only when they name every feature of the serving model (with
  finite numbers); otherwise left empty, so the server computes them from the candles with the
  one feature engine (:func:`xylen.features.latest_row`);
* ``feature_version``: the serving model's;
* ``meta``: scalar values kept, lists, objects and nulls dropped.

Only bodies that look like the alpha's are upgraded (an ``indicators`` key, or none of the keys
only v1 has), so a v1 body with a typo still gets v1's 422.  The answer to an upgraded request
keeps every v1 field and adds the alpha's ``model_name`` and ``probability``
(:func:`alpha_answer`); a v1 request's answer never carries them.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

import orjson
from fastapi import HTTPException
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from xylen.contract import Candle, PredictRequest
from xylen.data.schema import interval_ms
from xylen.timeutil import wall_ms

V1_ONLY_KEYS = frozenset({"request_id", "timestamp", "feature_version", "features"})
"""Keys of a v1 body that no alpha client sends."""

ALPHA_ANSWER_FIELDS = ("model_name", "probability")
"""Fields the alpha answered with that v1 names otherwise (``model_id``, ``prob_up``)."""


class AlphaCandle(BaseModel):
    """One alpha candle object; other keys a candle may carry (close time, trades, ...) are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    timestamp: int = Field(ge=0, validation_alias=AliasChoices("timestamp", "open_time"))
    open: float
    high: float
    low: float
    close: float
    volume: float

    def as_array(self) -> Candle:
        return (self.timestamp, self.open, self.high, self.low, self.close, self.volume)


class AlphaPredictRequest(BaseModel):
    """The alpha's ``/predict`` body, plus the v1 fields an alpha client may have started to send.

    Unknown top-level keys are refused (422) as in v1, so a misspelt key never silently drops data.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    symbol: str = Field(min_length=1, max_length=32)
    timeframe: str = Field(min_length=2, max_length=4)
    candles: list[AlphaCandle | Candle] = Field(default_factory=list, max_length=5000)
    indicators: dict[str, Any] = Field(default_factory=dict)
    meta: dict[str, Any] = Field(default_factory=dict)
    request_id: str | None = None
    timestamp: int | None = None
    feature_version: str | None = None
    features: dict[str, float] | None = None


def looks_alpha(body: bytes) -> bool:
    """True for a JSON object written for the alpha: it has ``indicators`` (which v1 refuses), or
    none of the keys only v1 has.  Anything else (not JSON, not an object, a v1 body) is not."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(data, dict) and ("indicators" in data or not V1_ONLY_KEYS & data.keys())


def _errors(exc: ValidationError) -> HTTPException:
    return HTTPException(422, exc.errors(include_url=False, include_context=False, include_input=False))


def _scalar(value: Any) -> bool:
    if isinstance(value, bool | int | str):
        return True
    return isinstance(value, float) and math.isfinite(value)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def upgrade_alpha(body: bytes, feature_names: tuple[str, ...], feature_version: str) -> PredictRequest:
    """The v1 request for an alpha body (see the module docstring); HTTPException 422 if malformed.

    ``feature_names`` and ``feature_version`` are the serving model's.
    """
    try:
        alpha = AlphaPredictRequest.model_validate_json(body)
    except ValidationError as exc:
        raise _errors(exc) from None
    candles = sorted(
        (c.as_array() if isinstance(c, AlphaCandle) else c for c in alpha.candles), key=lambda c: c[0]
    )
    timestamp = alpha.timestamp
    if timestamp is None and candles:
        try:
            timestamp = candles[-1][0] + interval_ms(alpha.timeframe) - 1
        except ValueError as exc:
            raise HTTPException(422, f"timeframe: {exc}") from None
    features = alpha.features
    if features is None and all(_number(alpha.indicators.get(n)) for n in feature_names):
        features = {n: float(alpha.indicators[n]) for n in feature_names}
    if not features and not candles:
        missing = [n for n in feature_names if not _number(alpha.indicators.get(n))]
        raise HTTPException(
            422,
            "no candles to compute the model's features from, and the indicators do not name them "
            f"(missing e.g. {', '.join(missing[:5])})",
        )
    upgraded = {
        "request_id": alpha.request_id or f"alpha-{uuid.uuid4().hex}",
        "symbol": alpha.symbol.upper().replace("/", ""),
        "timeframe": alpha.timeframe,
        "timestamp": timestamp if timestamp is not None else wall_ms(),  # features only: now
        "candles": candles,
        "features": features or {},
        "feature_version": alpha.feature_version or feature_version,
        "meta": {k: v for k, v in alpha.meta.items() if _scalar(v)},
    }
    try:
        return PredictRequest.model_validate(upgraded)
    except ValidationError as exc:
        raise _errors(exc) from None


def alpha_answer(answer: dict[str, Any]) -> dict[str, Any]:
    """The v1 answer plus the alpha's names for the model (``model_name``) and P(up) (``probability``)."""
    return {**answer, "model_name": answer["model_id"], "probability": answer["prob_up"]}
