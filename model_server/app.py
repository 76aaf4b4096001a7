"""The FastAPI application: state built by the lifespan, routes, admission middleware, OpenAPI.

``create_app(settings)`` returns the ASGI app; its lifespan builds :class:`ServerState`, loads the
first model (:meth:`ModelRegistry.start`), lets a fresh online (River) model learn the outcomes kept
in the feedback buffer, and runs the supervised background tasks (memory guard, version watcher,
retrain scheduler and, under systemd, the watchdog pings), which are cancelled and awaited on
shutdown.  :func:`serve` runs it on uvicorn, telling systemd when it serves and stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from model_server.deps import ServerState
from model_server.feedback import FeedbackBuffer
from model_server.guards import AdmissionMiddleware, MemoryGuard, RateLimiter
from model_server.metrics import ServerMetrics
from model_server.predictors import RiverPredictor
from model_server.registry import ModelRegistry
from model_server.routes import ReloadRequest, RollbackRequest, router
from model_server.sdnotify import watchdog_task
from model_server.settings import ServerSettings
from model_server.slim_imports import prepare_serving_process
from xylen import __version__
from xylen.contract import PredictRequest, RetrainRequest

logger = logging.getLogger(__name__)

SCHEDULER_PERIOD_S = 10.0


class Supervisor:
    """Named background tasks restarted with backoff when they crash; stopped with a timeout."""

    def __init__(self) -> None:
        self.tasks: list[asyncio.Task[None]] = []

    def start(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        self.tasks.append(asyncio.create_task(self._run(name, factory), name=name))

    @staticmethod
    async def _run(name: str, factory: Callable[[], Awaitable[None]]) -> None:
        backoff = 1.0
        while True:
            try:
                await factory()
                logger.warning("background task %s returned; restarting", name)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("background task %s crashed; restarting in %.0f s", name, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)

    async def stop(self, timeout_s: float) -> None:
        for task in self.tasks:
            task.cancel()
        if not self.tasks:
            return
        _, pending = await asyncio.wait(self.tasks, timeout=timeout_s)
        for task in pending:
            logger.error("background task %s did not stop within %.1f s", task.get_name(), timeout_s)


def build_state(settings: ServerSettings, metrics: ServerMetrics) -> ServerState:
    """Everything the routes share, not yet started (no model loaded)."""
    memory = MemoryGuard(
        settings.min_free_memory_mb, settings.memory_poll_s, metrics, disk_path=settings.watch_dir
    )
    memory.sample()
    feedback = FeedbackBuffer(settings.home.feedback)
    recent: deque[Mapping[str, float]] = deque(maxlen=settings.canary_rows)

    def recent_rows() -> list[Mapping[str, float]]:
        return list(recent)

    def stored_rows(names: Sequence[str], limit: int) -> list[dict[str, float]]:
        return feedback.tail_features(limit, names)

    registry = ModelRegistry(
        model_type=settings.model_type,
        keep_versions=settings.keep_versions,
        metrics=metrics,
        recent_rows=recent_rows,
        stored_rows=stored_rows,
        canary_limit=settings.canary_rows,
    )
    token = settings.token
    return ServerState(
        settings=settings,
        metrics=metrics,
        memory=memory,
        feedback=feedback,
        registry=registry,
        recent=recent,
        token=token.encode() if token else None,
        model_id=settings.model_id or f"{socket.gethostname()}/{settings.model_type}",
    )


def replay_feedback(state: ServerState) -> int:
    """Teach a fresh online model every outcome kept in the feedback buffer (before serving)."""
    model = state.registry.current
    if model is None or not isinstance(model.predictor, RiverPredictor) or model.predictor.n_learned:
        return 0  # only a fresh online model is taught the buffer; a saved state keeps its own record
    learned = 0
    for features, label in state.feedback.labelled_rows(model.predictor.feature_names):
        model.predictor.learn_one(features, label)
        learned += 1
    if learned:
        logger.info("online model %s learned %d stored outcomes", model.version, learned)
    return learned


async def _retrain_scheduler(state: ServerState) -> None:
    """Request a batch retrain when due (paused while memory is low: ``retrain_due`` says no)."""
    while True:
        await asyncio.sleep(min(SCHEDULER_PERIOD_S, max(state.settings.training_interval, 0.5)))
        await asyncio.to_thread(state.request_retrain_if_due)


def custom_openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """OpenAPI with the schemas of the raw-parsed request bodies added to the components."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, routes=app.routes, description=app.description
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        models: tuple[type[BaseModel], ...] = (PredictRequest, RetrainRequest, ReloadRequest, RollbackRequest)
        for model in models:
            body = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(body.pop("$defs", {}))
            components[model.__name__] = body
        app.openapi_schema = schema
        return schema

    return openapi


def create_app(settings: ServerSettings) -> FastAPI:
    """The model server's ASGI application for ``settings``."""
    metrics = ServerMetrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = build_state(settings, metrics)
        app.state.xylen = state
        await state.registry.start(settings.watch_dir, settings.model_path)
        await asyncio.to_thread(replay_feedback, state)  # not serving yet: no concurrent predictions
        supervisor = Supervisor()
        supervisor.start("memory-guard", state.memory.run)
        supervisor.start("retrain-scheduler", lambda: _retrain_scheduler(state))
        if settings.watch_interval_s > 0:
            folder = settings.watch_dir
            supervisor.start("model-watcher", lambda: state.registry.watch(folder, settings.watch_interval_s))
        watchdog = watchdog_task()
        if watchdog is not None:
            supervisor.start("systemd-watchdog", watchdog)
        current = state.registry.current
        logger.info(
            "model server ready: model %s, watching %s",
            current.version if current else "(none yet)",
            settings.watch_dir,
        )
        try:
            yield
        finally:
            await supervisor.stop(settings.shutdown_timeout_s)
            logger.info("model server stopped")

    app = FastAPI(
        title="Xylen model server",
        version=__version__,
        description="Wire contract v1: /predict /retrain /health /metrics /admin/*",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.include_router(router)
    app.openapi = custom_openapi(app)  # type: ignore[method-assign]
    limiter = (
        RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst)
        if settings.rate_limit_per_second > 0
        else None
    )
    app.add_middleware(
        AdmissionMiddleware,
        metrics=metrics,
        max_queue_depth=settings.max_queue_depth,
        max_body_bytes=settings.max_body_bytes,
        limiter=limiter,
    )
    return app


def serve(settings: ServerSettings) -> None:
    """Run the server in this process until SIGINT/SIGTERM (uvicorn, uvloop, httptools, 1 worker)."""
    import uvicorn

    from model_server.sdnotify import NotifyingServer
    from xylen.errors import XylenError

    prepare_serving_process()  # scikit-learn blocked; later imports of TA-Lib/LightGBM skip pandas
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        workers=1,
        lifespan="on",
        access_log=False,
        log_config=None,
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=int(settings.shutdown_timeout_s),
    )
    server = NotifyingServer(config)  # READY=1 / STOPPING=1 to systemd when NOTIFY_SOCKET is set
    server.run()
    if not server.started:
        raise XylenError("the model server did not start (see the log above)")
