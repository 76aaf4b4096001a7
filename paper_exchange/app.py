"""The aiohttp application of the paper exchange: routes, request pipeline, background tasks.

Every REST request goes through one pipeline (:class:`Gateway`), in this order:

1. parameters: the raw query (from the request line, byte-exact) and, for POST/PUT/DELETE, the
   form body; the query wins for a name in both; a name repeated within one part -> ``-1101``;
2. REQUEST_WEIGHT charged for the IP (429/418 replies, see ``rate_limit``; the
   ``foreign_weight_per_s`` fault adds another client's weight to every IP);
3. faults: latency, then injected 5xx (the request is not executed);
4. auth (``auth``): key, signature over the raw bytes, timestamp against the wall clock plus the
   clock-skew fault;
5. ORDERS counted for order endpoints;
6. the service method (the fill-after-cancel fault swaps a cancel for one that loses its race
   with a fill); an awaitable result is awaited; the unknown-error fault may replace an executed
   order's reply with a 503, the unreadable-reply fault with a truncated 200 body.

Replies are JSON (``Content-Type: application/json``) and carry ``X-MBX-USED-WEIGHT-1M``; order
replies also ``X-MBX-ORDER-COUNT-10S`` and ``-1M``; 429/418 add ``Retry-After``.  ``serverTime`` of
the ``/time`` endpoints is the transport's wall clock plus the clock-skew fault, whatever the service
says (its replay clock): it is the clock signed requests are checked against, and python-binance
derives its timestamp offset from it.  A service error
becomes its ``http_status`` with ``{"code", "msg"}``.  Anything unexpected is logged and answered
500 ``-1000``, which is a bug: malformed input always gets a 4xx from the transport or the service.
Unknown paths get 404 and known paths with another method 405, both ``-5000 "Path P, Method M is
invalid"`` (the fapi gateway's wording).  There is no per-request logging at INFO (no access log).

``GET /metrics`` answers the Prometheus text of :mod:`paper_exchange.metrics` (requests by route
and status, orders placed/filled/canceled, open orders, the replay clock); it is neither charged
nor signed, like the health endpoints of the other services.

Background tasks (started with the app, cancelled and awaited at cleanup, then ``service.close()``):
the replay clock (``service.advance()`` every ``tick_ms``, logging and continuing on errors) and
the listen-key expiry sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from paper_exchange.auth import Authenticator, parse_params
from paper_exchange.faults import Faults, truncated
from paper_exchange.metrics import ExchangeMetrics
from paper_exchange.protocol import API_ERROR_TYPES, BinanceError, ExchangeService, error_fields, json_dumps
from paper_exchange.rate_limit import RateLimited, RateLimiter
from paper_exchange.routes import (
    LISTEN_KEY_TARGETS,
    OPTIONAL_ROUTES,
    ROUTES,
    UNMATCHED_WEIGHT,
    Route,
    Security,
    paths_by_method,
)
from paper_exchange.settings import TransportSettings
from paper_exchange.user_stream import ListenKeys, UserStreamHub

logger = logging.getLogger(__name__)

JSON_TYPE = "application/json"
MSG_UNKNOWN_500 = "An unknown error occured while processing the request."
MSG_INVALID_PATH = "Path {path}, Method {method} is invalid"
_BODY_METHODS = frozenset({"POST", "PUT", "DELETE"})
MAX_BODY_BYTES = 1024 * 1024  # a signed order is well under 2 kB
MSG_BODY_TOO_LARGE = f"Request body too large; at most {MAX_BODY_BYTES} bytes are read."

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _reply(status: int, payload: Any, headers: dict[str, str]) -> web.Response:
    headers["Content-Type"] = JSON_TYPE
    return web.Response(status=status, body=json_dumps(payload), headers=headers)


class Gateway:
    """The request pipeline in front of an :class:`ExchangeService`."""

    def __init__(
        self,
        service: ExchangeService,
        settings: TransportSettings,
        faults: Faults,
        hub: UserStreamHub,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.service = service
        self.settings = settings
        self.faults = faults
        self.hub = hub
        self.clock = clock
        self.limiter = RateLimiter(
            settings.weight_limit_1m,
            settings.orders_limit_10s,
            settings.orders_limit_1m,
            settings.ban_after_429s,
            settings.ban_initial_s,
            settings.ban_max_s,
            weight_window_ms=settings.weight_window_ms,
            foreign_weight_per_s=faults.foreign_weight_per_s,
        )
        self.auth = Authenticator(
            settings.api_keys,
            settings.recv_window_default_ms,
            settings.recv_window_max_ms,
            settings.timestamp_ahead_tolerance_ms,
        )
        self._targets: dict[str, Callable[..., Any]] = {}
        served: list[Route] = []
        listen = {
            "listen_key_create": hub.create,
            "listen_key_keepalive": hub.keepalive,
            "listen_key_delete": hub.delete,
        }
        optional = frozenset(OPTIONAL_ROUTES)
        for route in ROUTES + OPTIONAL_ROUTES:
            if route.target in LISTEN_KEY_TARGETS:
                self._targets[route.target] = listen[route.target]
            else:
                target = getattr(service, route.target, None)
                if not callable(target):
                    if route in optional:
                        continue
                    raise TypeError(f"service has no method {route.target!r} for {route.method} {route.path}")
                self._targets[route.target] = target
            served.append(route)
        self.routes: tuple[Route, ...] = tuple(served)
        self._paths = paths_by_method(self.routes)

    def handler_for(self, route: Route) -> Handler:
        """The aiohttp handler of one route."""

        async def handle(request: web.Request) -> web.StreamResponse:
            return await self.dispatch(route, request)

        handle.__name__ = f"handle_{route.target}"
        return handle

    async def dispatch(self, route: Route, request: web.Request) -> web.Response:
        """Run one request through the pipeline described in the module docstring."""
        now_ms = int(self.clock() * 1000)
        ip = request.remote or "unknown"
        headers: dict[str, str] = {}
        account = ""
        limiter = self.limiter
        try:
            raw_query = request.raw_path.partition("?")[2]
            query_bytes = raw_query.encode("utf-8", "surrogateescape")
            body = await request.read() if request.method in _BODY_METHODS and request.body_exists else b""
            parse_error: BinanceError | None = None
            try:
                params = parse_params(
                    raw_query if raw_query.isascii() else query_bytes.decode("utf-8", "replace"),
                    body.decode("utf-8", "replace") if body else "",
                )
            except BinanceError as exc:
                params, parse_error = {}, exc
            limiter.charge_weight(ip, route.weight_of(params), now_ms)
            if parse_error is not None:
                raise parse_error
            path = route.path
            faults = self.faults
            if faults.http_enabled:
                delay = faults.latency_s(path)
                if delay > 0:
                    await asyncio.sleep(delay)
                injected = faults.server_error(path)
                if injected is not None:
                    headers["X-MBX-USED-WEIGHT-1M"] = str(limiter.used_weight(ip, now_ms))
                    return _reply(injected[0], injected[1], headers)
            security = route.security
            if security.needs_key:
                account = self.auth.account_for(request.headers.get("X-MBX-APIKEY"))
                if security.signed:
                    server_ms = int(self.clock() * 1000) + faults.skew_ms(path)
                    self.auth.verify(account, query_bytes, body, params, server_ms)
            if route.is_order:
                count_10s, count_1m = limiter.charge_order(account, now_ms)
                headers["X-MBX-ORDER-COUNT-10S"] = str(count_10s)
                headers["X-MBX-ORDER-COUNT-1M"] = str(count_1m)
            target = self._targets[route.target]
            if security is Security.TRADE and faults.fill_after_cancel(path, route.method):
                target = getattr(self.service, "cancel_order_losing_to_a_fill", target)
            result = target(account, params) if security.needs_key else target(params)
            if inspect.isawaitable(result):
                result = await result
            if security is Security.TRADE:
                unknown = faults.unknown_error(path, route.is_order)
                if unknown is not None:
                    headers["X-MBX-USED-WEIGHT-1M"] = str(limiter.used_weight(ip, now_ms))
                    return _reply(503, unknown, headers)
                if faults.unreadable_reply(path, route.method):
                    headers["X-MBX-USED-WEIGHT-1M"] = str(limiter.used_weight(ip, now_ms))
                    headers["Content-Type"] = JSON_TYPE
                    return web.Response(status=200, body=truncated(json_dumps(result)), headers=headers)
            elif route.target == "time" and type(result) is dict:
                # The clock signed requests are checked against: clients derive their timestamp
                # offset from it (python-binance's AsyncClient.create does), so it is wall time.
                result = {**result, "serverTime": int(self.clock() * 1000) + faults.skew_ms(path)}
            headers["X-MBX-USED-WEIGHT-1M"] = str(limiter.used_weight(ip, now_ms))
            return _reply(200, result, headers)
        except RateLimited as exc:
            headers["Retry-After"] = str(exc.retry_after_s)
            return self._error(exc.http_status, exc.code, exc.msg, headers, route, ip, account, now_ms)
        except API_ERROR_TYPES as exc:
            code, msg, status = error_fields(exc)
            return self._error(status, code, msg, headers, route, ip, account, now_ms)
        except web.HTTPRequestEntityTooLarge:  # past client_max_size: refused, never a 500
            return self._error(413, -1101, MSG_BODY_TOO_LARGE, headers, route, ip, account, now_ms)
        except Exception:
            logger.exception("unexpected error on %s %s", request.method, route.path)
            return self._error(500, -1000, MSG_UNKNOWN_500, headers, route, ip, account, now_ms)

    def _error(
        self,
        status: int,
        code: int,
        msg: str,
        headers: dict[str, str],
        route: Route,
        ip: str,
        account: str,
        now_ms: int,
    ) -> web.Response:
        headers["X-MBX-USED-WEIGHT-1M"] = str(self.limiter.used_weight(ip, now_ms))
        if route.is_order and account:
            count_10s, count_1m = self.limiter.order_counts(account, now_ms)
            headers["X-MBX-ORDER-COUNT-10S"] = str(count_10s)
            headers["X-MBX-ORDER-COUNT-1M"] = str(count_1m)
        return _reply(status, {"code": code, "msg": msg}, headers)

    async def unmatched(self, request: web.Request) -> web.StreamResponse:
        """404 for an unknown path, 405 for a known path with another method (Binance-like JSON)."""
        now_ms = int(self.clock() * 1000)
        ip = request.remote or "unknown"
        headers: dict[str, str] = {}
        try:
            self.limiter.charge_weight(ip, UNMATCHED_WEIGHT, now_ms)
        except RateLimited as exc:
            headers["Retry-After"] = str(exc.retry_after_s)
            headers["X-MBX-USED-WEIGHT-1M"] = str(self.limiter.used_weight(ip, now_ms))
            return _reply(exc.http_status, {"code": exc.code, "msg": exc.msg}, headers)
        headers["X-MBX-USED-WEIGHT-1M"] = str(self.limiter.used_weight(ip, now_ms))
        methods = self._paths.get(request.path)
        body = {"code": -5000, "msg": MSG_INVALID_PATH.format(path=request.path, method=request.method)}
        if methods is None:
            return _reply(404, body, headers)
        headers["Allow"] = ", ".join(sorted(methods))
        return _reply(405, body, headers)


async def run_clock(service: ExchangeService, tick_s: float, log_every_s: float = 60.0) -> None:
    """Call ``service.advance()`` every ``tick_s`` until cancelled; errors are logged (throttled)."""
    last_logged = -log_every_s
    suppressed = 0
    while True:
        try:
            result: Any = service.advance()
            if inspect.isawaitable(result):
                await result
        except asyncio.CancelledError:
            raise
        except Exception:
            now = time.monotonic()
            if now - last_logged >= log_every_s:
                logger.exception("service.advance() failed (%d similar errors suppressed)", suppressed)
                last_logged, suppressed = now, 0
            else:
                suppressed += 1
        await asyncio.sleep(tick_s)


GATEWAY_KEY = web.AppKey("gateway", Gateway)
HUB_KEY = web.AppKey("user_stream_hub", UserStreamHub)
SERVICE_KEY = web.AppKey("service", ExchangeService)
METRICS_KEY = web.AppKey("metrics", ExchangeMetrics)


def _watch(task: asyncio.Task[None]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        logger.critical("background task %s crashed", task.get_name(), exc_info=exc)
    else:
        logger.critical("background task %s stopped unexpectedly", task.get_name())


async def _background(app: web.Application) -> AsyncIterator[None]:
    service = app[SERVICE_KEY]
    hub = app[HUB_KEY]
    settings = app[GATEWAY_KEY].settings
    hub.bind_loop(asyncio.get_running_loop())
    service.subscribe(hub.publish)
    service.subscribe(app[METRICS_KEY].on_event)
    tasks = [
        asyncio.create_task(run_clock(service, settings.tick_ms / 1000.0), name="paper-exchange-clock"),
        asyncio.create_task(hub.run_expiry(settings.listen_key_sweep_s), name="paper-exchange-listen-keys"),
    ]
    for task in tasks:
        task.add_done_callback(_watch)
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        _done, pending = await asyncio.wait(tasks, timeout=settings.shutdown_timeout_s)
        for task in pending:
            logger.error("background task %s did not stop in time", task.get_name())
        try:
            service.close()
        except Exception:
            logger.exception("service.close() failed")


async def _close_streams(app: web.Application) -> None:
    await app[HUB_KEY].close_all()


def create_app(
    service: ExchangeService,
    settings: TransportSettings | None = None,
    *,
    faults: Faults | None = None,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    """The paper exchange as an aiohttp application around ``service``.

    ``faults`` defaults to the file named by ``settings.faults_file`` (validated; a bad file
    raises :class:`xylen.errors.ConfigError`).  ``clock`` is the wall clock (seconds) used for
    rate-limit windows and timestamp checks; tests may pass their own.
    """
    settings = settings or TransportSettings()
    faults = faults if faults is not None else Faults.from_file(settings.faults_file)
    hub = UserStreamHub(
        ListenKeys(settings.listen_key_ttl_s),
        faults,
        queue_size=settings.ws_queue_size,
        heartbeat_s=settings.ws_heartbeat_s,
        send_timeout_s=settings.ws_send_timeout_s,
    )
    gateway = Gateway(service, settings, faults, hub, clock)
    metrics = ExchangeMetrics()
    metrics.watch_service(service)
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[metrics.middleware])
    app[SERVICE_KEY] = service
    app[HUB_KEY] = hub
    app[GATEWAY_KEY] = gateway
    app[METRICS_KEY] = metrics
    app.router.add_route("GET", "/metrics", metrics.handle)
    for route in gateway.routes:
        app.router.add_route(route.method, route.path, gateway.handler_for(route))
    app.router.add_route("GET", "/private/ws", hub.handle)
    app.router.add_route("GET", "/ws/{key}", hub.handle)
    app.router.add_route("*", "/{tail:.*}", gateway.unmatched)
    app.cleanup_ctx.append(_background)
    app.on_shutdown.append(_close_streams)
    return app


async def serve(app: web.Application, host: str, port: int, shutdown_timeout_s: float = 5.0) -> None:
    """Run ``app`` on ``host:port`` until SIGINT or SIGTERM, then shut down gracefully."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=shutdown_timeout_s)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
                installed.append(sig)
        for address in runner.addresses:
            logger.info("paper exchange listening on http://%s:%s", *address[:2])
        await stop.wait()
        logger.info("paper exchange shutting down")
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        await runner.cleanup()
