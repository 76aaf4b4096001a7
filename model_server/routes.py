"""HTTP routes of wire contract v1: ``/predict``, ``/retrain``, ``/health``, ``/metrics``, ``/admin/*``.

Bodies are read raw (with a size limit) and parsed with ``model_validate_json``; a body that does
not validate answers 422 with pydantic's error list, a ``feature_version`` the model does not know
409 (so does a timeframe, or a symbol outside the model's ``symbols``), and no bad input ever
reaches a 500.  ``/predict`` answers with orjson bytes built straight
from a dict with :class:`xylen.contract.PredictResponse`'s fields (``response_model`` documents it).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import orjson
from fastapi import APIRouter, HTTPException, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import ClientDisconnect

from model_server.compat import alpha_answer, looks_alpha, upgrade_alpha
from model_server.deps import Authorized, ServerState, StateDep
from model_server.predictors import MissingFeatures, ModelError, RiverPredictor
from model_server.registry import LoadedModel, version_dirs
from xylen.contract import HealthResponse, PredictRequest, PredictResponse, RetrainRequest, RetrainResponse
from xylen.errors import XylenError
from xylen.features import FEATURE_VERSION, latest_row, max_warmup
from xylen.probability import logit

logger = logging.getLogger(__name__)
router = APIRouter()
M = TypeVar("M", bound=BaseModel)
JSON = "application/json"
ATR_FEATURE = "atr_14_rel"  # ATR(14) / close: the stop and take-profit distances scale it by the price
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": text}
    for code, text in {
        401: "missing or invalid bearer token",
        409: "feature_version, timeframe or symbol the model does not serve; version conflict",
        413: "body larger than MAX_BODY_BYTES",
        422: "body that does not validate (pydantic error list) or unusable input",
        429: "too many requests in flight (MAX_QUEUE_DEPTH) or rate limited",
        503: "no model loaded, or (retrain) free memory under MIN_FREE_MEMORY_MB",
    }.items()
}


class ReloadRequest(BaseModel):
    """``POST /admin/reload``: a version directory (relative to the models folder), else the newest."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    path: str | None = Field(None, min_length=1, max_length=4096)


class RollbackRequest(BaseModel):
    """``POST /admin/rollback``: a kept version, else the one before the serving version."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    version: str | None = Field(None, min_length=1, max_length=128)


class AdminResponse(BaseModel):
    model_config = ConfigDict(frozen=True)
    status: Literal["swapped", "rolled_back"]
    model_version: str
    backend: str
    path: str | None
    versions: list[str]
    canary_rows: int
    fallback: str | None = None


def body_doc(model: type[BaseModel], required: bool = True) -> dict[str, Any]:
    """``openapi_extra`` declaring a raw-parsed JSON body (schemas added by ``app.custom_openapi``)."""
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": required, "content": {JSON: {"schema": schema}}}}


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 past ``limit`` bytes (chunked bodies included).

    A client that hangs up before its body is complete ends the request with one log line and a
    400 that nobody reads: a disconnect is the client's business, not a server error.
    """
    chunks: list[bytes] = []
    total = 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise HTTPException(413, f"body exceeds MAX_BODY_BYTES {limit}")
            chunks.append(chunk)
    except ClientDisconnect:
        logger.info("client disconnected during %s after %d body bytes", request.url.path, total)
        raise HTTPException(400, "client disconnected before the body was complete") from None
    return b"".join(chunks)


def parse(model: type[M], body: bytes) -> M:
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise HTTPException(
            422, exc.errors(include_url=False, include_context=False, include_input=False)
        ) from None


def json_response(payload: dict[str, Any], status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type=JSON)


def serving(state: ServerState) -> LoadedModel:
    model = state.registry.current
    if model is None:
        raise HTTPException(503, "no model loaded yet", headers={"Retry-After": "5"})
    return model


def candle_features(req: PredictRequest, needed: tuple[str, ...]) -> dict[str, float]:
    """The newest feature row computed from the request's candles (422 when they cannot give it)."""
    arr = np.asarray(req.candles, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise HTTPException(422, "candles hold non-finite values")
    columns = {"open_time": arr[:, 0].astype(np.int64), "open": arr[:, 1], "high": arr[:, 2]}
    columns.update(low=arr[:, 3], close=arr[:, 4], volume=arr[:, 5])
    try:
        row = latest_row(columns, req.timeframe)
    except (XylenError, ValueError, IndexError) as exc:
        raise HTTPException(422, f"cannot compute features from the candles: {exc}") from None
    if not all(math.isfinite(row.get(name, math.nan)) for name in needed):
        raise HTTPException(
            422,
            f"{len(req.candles)} candles are too few for the features (need >= {max_warmup(req.timeframe)})",
        )
    return row


def decide(state: ServerState, model: LoadedModel, req: PredictRequest, started: float) -> dict[str, Any]:
    """Probability -> action, confidence and ATR brackets: the body of ``/predict``."""
    predictor = model.predictor
    meta = model.metadata
    refusal = predictor.refusal(req.feature_version, req.timeframe, req.symbol)
    if refusal is not None:
        raise HTTPException(409, f"model {model.version} {refusal}")
    features: dict[str, float] = req.features or candle_features(req, predictor.feature_names)
    price: Any = req.candles[-1][4] if req.candles else req.meta.get("price", req.meta.get("close"))
    # The ATR in price units for the brackets: the scale-free ATR(14) / close times the price.
    atr_rel = features.get(ATR_FEATURE)
    if atr_rel is None and req.candles and req.features:
        atr_rel = candle_features(req, (ATR_FEATURE,))[ATR_FEATURE]
    try:
        prob, raw = predictor.score_one(features)  # served (calibrated) and the model's own
    except MissingFeatures as exc:
        raise HTTPException(422, str(exc)) from None
    recal = None if predictor.learns_online else state.recalibration.current(model.version)
    if recal is not None:
        prob = recal.apply_one(prob)  # the drift learned from outcomes since its training
    prob = min(max(prob, 0.0), 1.0)
    settings = state.settings
    action = (
        "LONG" if prob >= settings.long_threshold else "SHORT" if prob <= settings.short_threshold else "HOLD"
    )
    stop = take = None
    usable_price = (
        isinstance(price, int | float) and not isinstance(price, bool) and math.isfinite(price) and price > 0
    )
    if action != "HOLD" and usable_price and atr_rel is not None and atr_rel > 0:
        atr = atr_rel * float(price)
        sign = 1.0 if action == "LONG" else -1.0
        stop = float(price) - sign * meta.stop_atr_multiple * atr
        take = float(price) + sign * meta.take_profit_atr_multiple * atr
    state.recent.append(features)
    elapsed = time.perf_counter() - started
    state.metrics.latency.observe(elapsed)
    return {
        "request_id": req.request_id,
        "model_id": state.model_id,
        "model_version": model.version,
        "backend": model.backend,
        "action": action,
        "prob_up": prob,
        "confidence": max(prob, 1.0 - prob),
        "raw_score": logit(raw),
        "stop_loss": stop,
        "take_profit": take,
        "latency_ms": elapsed * 1000.0,
    }


@router.post(
    "/predict", response_model=PredictResponse, responses=_ERRORS, openapi_extra=body_doc(PredictRequest)
)
async def predict(request: Request, state: StateDep, _: Authorized) -> Response:
    """One prediction for the newest candle (features given, or computed from the candles).

    A body written for the 0.0.1-alpha server is upgraded (:mod:`model_server.compat`) and its
    answer adds the alpha's ``model_name`` and ``probability``; a v1 answer never has them."""
    started = time.perf_counter()
    body = await read_body(request, state.settings.max_body_bytes)
    try:
        req = parse(PredictRequest, body)
    except HTTPException:
        if not looks_alpha(body):
            raise
        model = serving(state)
        req = upgrade_alpha(body, model.predictor.feature_names, model.predictor.feature_version)
        return json_response(alpha_answer(decide(state, model, req, started)))
    return json_response(decide(state, serving(state), req, started))


@router.post(
    "/retrain", response_model=RetrainResponse, responses=_ERRORS, openapi_extra=body_doc(RetrainRequest)
)
async def retrain(request: Request, state: StateDep, _: Authorized) -> Response:
    """Store observed outcomes in the feedback buffer; the online model learns them."""
    started = time.perf_counter()
    metrics = state.metrics
    if state.memory.low:
        metrics.retrain_requests.labels("unavailable").inc()
        raise HTTPException(
            503, "free memory under MIN_FREE_MEMORY_MB: retraining paused", {"Retry-After": "30"}
        )
    req = parse(RetrainRequest, await read_body(request, state.settings.max_body_bytes))
    model = state.registry.current
    expected = model.predictor.feature_version if model is not None else FEATURE_VERSION
    if req.feature_version != expected:
        raise HTTPException(409, f"this server takes feature_version {expected!r}")
    if model is not None:
        names = model.predictor.feature_names
        short = [o.request_id for o in req.outcomes if any(n not in o.features for n in names)]
        if short:
            raise HTTPException(422, f"{len(short)} outcome(s) lack model features, e.g. {short[:5]}")
    try:
        await asyncio.to_thread(state.feedback.append, req.outcomes, req.feature_version)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    except OSError as exc:
        logger.error("feedback buffer write failed: %s", exc)
        raise HTTPException(503, f"feedback buffer not writable: {exc.strerror}") from None
    if model is not None and model.predictor.learns_online:
        for i, outcome in enumerate(req.outcomes, start=1):
            model.predictor.learn_one(outcome.features, outcome.label)
            if i % 256 == 0:
                await asyncio.sleep(0)  # let predictions through during a long batch
        metrics.online_learned.inc(len(req.outcomes))
    elif model is not None:
        await asyncio.to_thread(learn_recalibration, state, model, req)
    scheduled = await asyncio.to_thread(state.request_retrain_if_due)
    metrics.retrain_samples.inc(len(req.outcomes))
    metrics.retrain_requests.labels("accepted").inc()
    metrics.feedback_size.set(state.feedback.size)
    metrics.retrain_seconds.observe(time.perf_counter() - started)
    out = RetrainResponse(
        status="accepted",
        samples_received=len(req.outcomes),
        buffer_size=state.feedback.size,
        retrain_scheduled=scheduled,
    )
    return json_response(out.model_dump())


def learn_recalibration(state: ServerState, model: LoadedModel, req: RetrainRequest) -> None:
    """A batch model's outcomes recalibrate what it serves (:mod:`model_server.recalibration`)."""
    predictor = model.predictor
    names = predictor.feature_names
    rows = [(o.timestamp, o.features, int(o.label)) for o in req.outcomes]
    state.recalibration.learn(
        predictor, model.metadata.train_end or 0, rows, lambda: state.feedback.timed_rows(names)
    )


def recalibration_health(state: ServerState, model: LoadedModel | None) -> dict[str, Any]:
    """A batch model's online recalibration for ``/health`` (nothing for an online model)."""
    if model is None or model.predictor.learns_online:
        return {}
    recal = state.recalibration.current(model.version)
    if recal is None:
        return {"recalibration_intercept": 0.0, "recalibration_slope": 1.0, "recalibration_outcomes": 0}
    return recal.health()


ONLINE_HEALTH_FIELDS = ("online_outcomes", "prequential_log_loss", "constant_log_loss", "online_answering")
MODEL_HEALTH_FIELDS = ("symbols", "interval", "horizon_bars", "label_band")
RECALIBRATION_HEALTH_FIELDS = ("recalibration_intercept", "recalibration_slope", "recalibration_outcomes")


def model_health(model: LoadedModel | None) -> dict[str, Any]:
    """What the serving model answers for and the label it learns (nothing while none is loaded)."""
    if model is None:
        return {}
    meta = model.metadata
    return {
        "symbols": list(meta.symbols),
        "interval": meta.base_interval,
        "horizon_bars": meta.horizon_bars,
        "label_band": meta.label_band,
    }


def online_health(model: LoadedModel | None) -> dict[str, Any]:
    """The online model's prequential record for ``/health`` (nothing for a batch model)."""
    predictor = model.predictor if model is not None else None
    if not isinstance(predictor, RiverPredictor):
        return {}
    score = predictor.served
    return {
        "online_outcomes": predictor.n_learned,
        "prequential_log_loss": score.model,
        "constant_log_loss": score.constant,
        "online_answering": "model" if predictor.answering else "base_rate",
    }


@router.get("/health", response_model=HealthResponse)
async def health(state: StateDep) -> Response:
    """Liveness, the serving model (its symbols, interval and label definition) and, for an online
    model, its prequential log-loss beside the constant's (no token needed).  Fields without a
    value for this server are left out of the body (clients ignore fields they do not know)."""
    model = state.registry.current
    status = "loading" if model is None else "degraded" if state.memory.low else "ok"
    out = HealthResponse(
        status=status,
        uptime_seconds=time.monotonic() - state.started_at,
        memory_usage_mb=state.memory.rss_mb(),
        model_loaded=model is not None,
        model_type=model.backend if model is not None else None,
        model_version=model.version if model is not None else None,
        last_trained=model.metadata.created_at if model is not None else None,
        **online_health(model),
        **model_health(model),
        **recalibration_health(state, model),
    )
    body = out.model_dump()
    for name in (*ONLINE_HEALTH_FIELDS, *MODEL_HEALTH_FIELDS, *RECALIBRATION_HEALTH_FIELDS):
        if body[name] is None:
            del body[name]
    return json_response(body)


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
async def metrics(state: StateDep) -> Response:
    """Prometheus text exposition (no token needed)."""
    state.memory.rss_mb()
    state.metrics.feedback_size.set(state.feedback.size)
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


def admin_answer(
    state: ServerState, loaded: LoadedModel, status: Literal["swapped", "rolled_back"]
) -> AdminResponse:
    return AdminResponse(
        status=status,
        model_version=loaded.version,
        backend=loaded.backend,
        path=str(loaded.path) if loaded.path else None,
        versions=state.registry.versions,
        canary_rows=loaded.canary_rows,
        fallback=loaded.fallback,
    )


def reload_target(state: ServerState, given: str | None) -> Path:
    """The version directory to load: inside the models folder (or the configured MODEL_PATH)."""
    folder = state.settings.watch_dir.resolve()
    try:
        if given is None:
            found = version_dirs(folder)
            if not found:
                raise HTTPException(422, f"no model directory under {folder}")
            return found[-1]
        target = (folder / given).resolve()
        configured = state.settings.model_path.resolve() if state.settings.model_path else None
        if target != configured and folder not in target.parents:
            raise HTTPException(422, "path must be a directory inside the models folder")
        if not (target / "metadata.json").is_file():
            raise HTTPException(422, f"{given}: not a model directory (no metadata.json)")
        return target
    except (OSError, ValueError) as exc:
        raise HTTPException(422, f"unusable path: {exc}") from None


@router.post(
    "/admin/reload",
    response_model=AdminResponse,
    responses=_ERRORS,
    openapi_extra=body_doc(ReloadRequest, False),
)
async def admin_reload(request: Request, state: StateDep, _: Authorized) -> AdminResponse:
    """Load a version beside the serving one, check it on a canary batch, swap it in."""
    body = await read_body(request, state.settings.max_body_bytes)
    req = parse(ReloadRequest, body) if body.strip() else ReloadRequest()
    target = reload_target(state, req.path)
    try:
        loaded = await state.registry.load(target, "admin reload")
    except ModelError as exc:
        raise HTTPException(exc.status, f"refused {target.name}: {exc}") from None
    return admin_answer(state, loaded, "swapped")


@router.post(
    "/admin/rollback",
    response_model=AdminResponse,
    responses=_ERRORS,
    openapi_extra=body_doc(RollbackRequest, False),
)
async def admin_rollback(request: Request, state: StateDep, _: Authorized) -> AdminResponse:
    """Serve a kept earlier version again."""
    body = await read_body(request, state.settings.max_body_bytes)
    req = parse(RollbackRequest, body) if body.strip() else RollbackRequest()
    try:
        loaded = await state.registry.rollback(req.version)
    except ModelError as exc:
        raise HTTPException(409, str(exc)) from None
    return admin_answer(state, loaded, "rolled_back")
