"""The dashboard's server: the feed (a read-only WebSocket), a JSON history API, the admin control
API and the built dashboard's static files (aiohttp), all on one port, one origin.

``GET /ws`` sends a ``snapshot`` message on connect, then one ``beat`` message per heartbeat, ``log``
messages as lines are logged and a ``risk`` message when the safety switches change (the message
models are in :mod:`coordinator.feed_models`).  Messages are serialized ONCE per publish and pushed to every
client through its own bounded queue, drained by that client's writer task: :meth:`publish_beat` is
synchronous and never waits, and a client whose queue is full (or whose send takes longer than
``send_timeout_s``) is dropped (close code 1013), so a slow browser never slows the beat.  Client
messages are ignored, except ``ping`` (text ``ping`` or ``{"type": "ping"}``), answered by ``pong``.

``GET /api/trades?since=MS&limit=N``, ``/api/decisions?limit=N`` and ``/api/equity?since=MS&limit=N``
serve history from a :class:`HistoryProvider` (the coordinator's journal).

Auth: with ``require_token`` the feed and history routes need ``XYLEN_DASHBOARD_TOKEN`` as ``?token=``
(browsers cannot set headers on a WebSocket) or ``Authorization: Bearer``.  A WebSocket upgrade with a
missing or wrong token is accepted and closed at once with code 4401 (reason ``unauthorized``), so a
browser can tell why; a plain HTTP request gets 401 ``{"error": "unauthorized"}``.  The access log is
off, so a token in a query string is never written to a log.  No payload model has a secret field, and
every outgoing text is scrubbed of the tokens (and any other ``redact`` value) as a second line of
defence.

Controls (``POST /api/control/{pause,resume,halt,reset-breaker}``) exist only with an admin token
(``XYLEN_DASHBOARD_ADMIN_TOKEN``, distinct from the read token) and a :class:`Controls`: they need it
as ``Authorization: Bearer`` (the read token -> 403, none or wrong -> 401, no controls -> 404, a
malformed body -> 400, a failing action -> 503; never 500).  The :class:`Controls` implementation
journals and logs each action.

Static files: ``GET /`` serves the built dashboard's ``index.html`` (``no-cache``), ``/assets/*`` its
hashed bundles (cached for a year, ``immutable``) and ``/<file>`` the other files at its top; they
need no token (they hold no data).  Without a build, ``/`` answers a short page saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import orjson
from aiohttp import WSCloseCode, WSMsgType, web
from pydantic import BaseModel, SecretStr, ValidationError

from coordinator.feed_models import (
    AccountView,
    BeatMessage,
    BreakerView,
    ControlAnswer,
    DecisionsPage,
    DecisionView,
    EmptyBody,
    EnsembleQualityView,
    EquityPage,
    EquityPoint,
    HaltBody,
    LogLine,
    LogMessage,
    ModelStatusView,
    OrderRow,
    PongMessage,
    PositionRow,
    ReconciliationView,
    ResetBreakerBody,
    RiskMessage,
    RiskStateView,
    SnapshotMessage,
    SystemView,
    TradesPage,
    TradeView,
)
from xylen.timeutil import wall_ms

logger = logging.getLogger(__name__)

MAX_LIMIT = 5000
DEFAULT_LIMIT = 100
_MIN_REDACT_CHARS = 6
_T = TypeVar("_T")
WS_UNAUTHORIZED = 4401  # the close code of a WebSocket opened without a valid token
DIST_DIR = Path(__file__).resolve().parent / "dashboard_dist"
IMMUTABLE = "public, max-age=31536000, immutable"
NOT_BUILT_PAGE = (
    "<!doctype html><html lang=en><meta charset=utf-8><title>Xylen</title>"
    "<body style='background:#000;color:#eee;font-family:sans-serif'>"
    "<h1>Xylen</h1><p>The dashboard was not built: run <code>npm run build</code> in "
    "<code>dashboard/</code>. The feed is at <code>/ws</code>, the history at <code>/api</code>.</p>"
)


# ---------------------------------------------------------------------- history provider


class HistoryProvider(Protocol):
    """Where the history API reads from (the coordinator's journal implements it)."""

    async def trades_since(self, since_ms: int, limit: int) -> Sequence[TradeView]:
        """Trades opened or closed at or after ``since_ms``, oldest first, at most ``limit``."""
        ...

    async def recent_decisions(self, limit: int) -> Sequence[DecisionView]:
        """The newest ``limit`` decisions, oldest first."""
        ...

    async def equity_since(self, since_ms: int, limit: int) -> Sequence[EquityPoint]:
        """Equity points at or after ``since_ms``, oldest first, at most ``limit``."""
        ...


class Controls(Protocol):
    """The admin actions behind the control API (the coordinator's safety switch implements it).

    Each returns the safety switches' state after the action; each journals and logs it."""

    async def pause(self) -> RiskStateView:
        """Refuse new entries; open positions and their brackets stay managed."""
        ...

    async def resume(self) -> RiskStateView:
        """Allow entries again (a halt stays)."""
        ...

    async def halt(self, flatten: bool) -> RiskStateView:
        """Halt trading; ``flatten`` also closes every position."""
        ...

    async def reset_breaker(self, name: str) -> RiskStateView | None:
        """Reset breaker ``name`` (None: no breaker has that name)."""
        ...


# ---------------------------------------------------------------------- server


@dataclass(eq=False)
class _Client:
    ws: web.WebSocketResponse
    queue: asyncio.Queue[str]
    peer: str
    abort: Callable[[], None]
    writer: asyncio.Task[None] | None = None
    dropped: bool = False
    sent: int = field(default=0)


class DashboardServer:
    """The WebSocket feed and history API.  Publish from the event loop's thread only."""

    def __init__(
        self,
        provider: HistoryProvider,
        *,
        token: SecretStr | str | None,
        require_token: bool = True,
        queue_size: int = 64,
        send_timeout_s: float = 5.0,
        history_timeout_s: float = 5.0,
        history: int = 200,
        redact: Iterable[SecretStr | str] = (),
        clock_ms: Callable[[], int] | None = None,
        admin_token: SecretStr | str | None = None,
        controls: Controls | None = None,
        static_dir: Path | None = DIST_DIR,
    ) -> None:
        secret = token.get_secret_value() if isinstance(token, SecretStr) else token
        admin = admin_token.get_secret_value() if isinstance(admin_token, SecretStr) else admin_token
        if require_token and not secret:
            raise ValueError("dashboard.require_token is true but XYLEN_DASHBOARD_TOKEN is not set")
        if admin and secret and hmac.compare_digest(admin.encode(), secret.encode()):
            raise ValueError("XYLEN_DASHBOARD_ADMIN_TOKEN must differ from XYLEN_DASHBOARD_TOKEN")
        self._provider = provider
        self._token = secret.encode() if secret else None
        self._admin = admin.encode() if admin else None
        self._controls = controls
        self._static = static_dir
        self._require_token = require_token
        self._queue_size = max(1, queue_size)
        self._send_timeout_s = send_timeout_s
        self._history_timeout_s = history_timeout_s
        self._clock_ms = clock_ms or wall_ms
        scrub = [s.get_secret_value() if isinstance(s, SecretStr) else s for s in redact]
        self._redact = _redaction_forms([*scrub, *(s for s in (secret, admin) if s)])
        self._clients: set[_Client] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._positions: list[PositionRow] = []
        self._risk: RiskStateView | None = None
        self._models: list[ModelStatusView] = []
        self._breakers: dict[str, bool] = {}
        self._system: SystemView | None = None
        self._account: AccountView | None = None
        self._orders: list[OrderRow] = []
        self._reconciliation: ReconciliationView | None = None
        self._breaker_details: list[BreakerView] = []
        self._ensemble: EnsembleQualityView | None = None
        self._decisions: deque[DecisionView] = deque(maxlen=history)
        self._trades: deque[TradeView] = deque(maxlen=history)
        self._equity: deque[EquityPoint] = deque(maxlen=history * 10)
        self._logs: deque[LogLine] = deque(maxlen=history)
        self._runner: web.AppRunner | None = None

    # ------------------------------------------------------------------ app and lifecycle

    def make_app(self) -> web.Application:
        """The aiohttp application (``/ws``, ``/api/*``, ``/api/control/*`` and the static files)."""
        app = web.Application(client_max_size=16 * 1024)
        app.router.add_get("/ws", self._ws)
        app.router.add_get("/api/trades", self._api_trades)
        app.router.add_get("/api/decisions", self._api_decisions)
        app.router.add_get("/api/equity", self._api_equity)
        app.router.add_post("/api/control/{action}", self._api_control)
        app.router.add_get("/", self._index)
        app.router.add_get("/assets/{path:.+}", self._asset)
        app.router.add_get("/{name:[^/]+}", self._top_file)
        return app

    @property
    def controls_enabled(self) -> bool:
        """Whether the control API acts (an admin token and the controls are configured)."""
        return self._admin is not None and self._controls is not None

    def set_controls(self, controls: Controls) -> None:
        """The actions behind the control API (they act only with an admin token)."""
        self._controls = controls

    def set_system(self, system: SystemView) -> None:
        """What the snapshot says about the coordinator before the first beat."""
        self._system = system

    async def start(self, host: str, port: int) -> None:
        """Bind ``host:port`` (port 0 picks a free one, see :attr:`port`)."""
        runner = web.AppRunner(self.make_app(), access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        self._runner = runner
        logger.info("dashboard feed on ws://%s:%s/ws", host, self.port)

    @property
    def port(self) -> int:
        """The bound port (0 before :meth:`start`)."""
        if self._runner is None or not self._runner.addresses:
            return 0
        port: int = self._runner.addresses[0][1]
        return port

    @property
    def client_count(self) -> int:
        """Connected clients."""
        return len(self._clients)

    async def stop(self, timeout_s: float = 3.0) -> None:
        """Close every client (1001), cancel and await the writer tasks (``timeout_s``), unbind."""
        for client in list(self._clients):
            self._drop(client, WSCloseCode.GOING_AWAY, "server stopping")
        tasks = list(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout_s)
            for task in pending:
                task.cancel()
                logger.warning("dashboard task %s did not finish within %.1f s", task.get_name(), timeout_s)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def load_history(self, limit: int = DEFAULT_LIMIT, window_ms: int = 2 * 86_400_000) -> None:
        """Seed the snapshot with the newest ``limit`` decisions and trades and the equity of the
        last ``window_ms`` of clock time (the newest points, up to the snapshot's capacity)."""
        since = max(0, self._clock_ms() - window_ms)
        self._decisions.extend(await self._provider.recent_decisions(limit))
        trades = await self._provider.trades_since(since, MAX_LIMIT)
        self._trades.extend(trades[-limit:])
        self._equity.extend(await self._provider.equity_since(since, MAX_LIMIT))

    # ------------------------------------------------------------------ publishing

    def snapshot(self) -> SnapshotMessage:
        """The message a new client gets first."""
        return SnapshotMessage(
            ts=self._clock_ms(),
            positions=list(self._positions),
            decisions=list(self._decisions),
            trades=list(self._trades),
            models=list(self._models),
            equity=list(self._equity),
            logs=list(self._logs),
            breakers=dict(self._breakers),
            risk=self._risk,
            ensemble=self._ensemble,
            system=self._system,
            account=self._account,
            orders=list(self._orders),
            reconciliation=self._reconciliation,
            breaker_details=list(self._breaker_details),
        )

    def publish_beat(self, message: BeatMessage) -> None:
        """Record one beat's state and queue it for every client (never waits).

        A beat without a risk state (or a system view) carries the last one given."""
        update: dict[str, Any] = {}
        if message.risk is None and self._risk is not None:
            update["risk"] = self._risk
        if message.system is None and self._system is not None:
            update["system"] = self._system
        if update:
            message = message.model_copy(update=update)
        self._positions = list(message.positions)
        self._models = list(message.models)
        self._breakers = dict(message.breakers)
        self._system = message.system
        self._account = message.account
        self._orders = list(message.orders)
        self._reconciliation = message.reconciliation or self._reconciliation
        self._breaker_details = list(message.breaker_details)
        self._ensemble = message.ensemble or self._ensemble
        self._decisions.extend(message.decisions)
        self._trades.extend(message.trades)
        self._equity.extend(message.equity)
        self._logs.extend(message.logs)
        self._broadcast(message.model_dump_json())

    def publish_risk(self, risk: RiskStateView) -> None:
        """Record the safety switches' state and queue a ``risk`` message (never waits)."""
        self._risk = risk
        self._broadcast(RiskMessage(ts=self._clock_ms(), risk=risk).model_dump_json())

    def publish_log(self, line: LogLine) -> None:
        """Record one log line and queue it as a ``log`` message (never waits)."""
        self._logs.append(line)
        self._broadcast(LogMessage(ts=line.ts, line=line).model_dump_json())

    def _scrub(self, text: str) -> str:
        for secret in self._redact:
            if secret in text:
                text = text.replace(secret, "***")
        return text

    def _broadcast(self, text: str) -> None:
        text = self._scrub(text)
        for client in list(self._clients):
            self._offer(client, text)

    def _offer(self, client: _Client, text: str) -> None:
        try:
            client.queue.put_nowait(text)
        except asyncio.QueueFull:
            self._drop(client, WSCloseCode.TRY_AGAIN_LATER, "too slow")

    def _drop(self, client: _Client, code: int, reason: str) -> None:
        """Forget ``client`` now; close its socket in a tracked task (aborted if closing hangs)."""
        if client.dropped:
            return
        client.dropped = True
        self._clients.discard(client)
        if code != WSCloseCode.GOING_AWAY:
            logger.warning("dashboard client %s dropped: %s", client.peer, reason)
        if client.writer is not None:
            client.writer.cancel()
        self._track(self._close(client, code, reason), f"ws-close:{client.peer}")

    async def _close(self, client: _Client, code: int, reason: str) -> None:
        try:
            await asyncio.wait_for(client.ws.close(code=code, message=reason.encode()), 1.0)
        except asyncio.TimeoutError:
            client.abort()
        except (ConnectionError, RuntimeError):
            client.abort()

    def _track(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("dashboard task %s crashed", task.get_name(), exc_info=task.exception())

    async def _writer(self, client: _Client) -> None:
        """Drain one client's queue onto its socket; a slow or broken socket drops the client."""
        try:
            while True:
                text = await client.queue.get()
                await asyncio.wait_for(client.ws.send_str(text), self._send_timeout_s)
                client.sent += 1
        except asyncio.CancelledError:
            raise
        except asyncio.TimeoutError:
            self._drop(client, WSCloseCode.TRY_AGAIN_LATER, f"send took over {self._send_timeout_s} s")
        except (ConnectionError, RuntimeError) as exc:
            self._drop(client, WSCloseCode.GOING_AWAY, f"send failed: {exc}")

    # ------------------------------------------------------------------ handlers

    def _authorized(self, request: web.Request) -> bool:
        if not self._require_token:
            return True
        if self._token is None:
            raise RuntimeError("a token is required but none is set")
        given = request.query.get("token", "") or _bearer(request)
        return hmac.compare_digest(given.encode(), self._token)

    @staticmethod
    def _unauthorized() -> web.Response:
        return web.json_response(
            {"error": "unauthorized"}, status=401, headers={"WWW-Authenticate": "Bearer"}
        )

    async def _refuse_ws(self, request: web.Request) -> web.StreamResponse:
        """Accept the upgrade and close with 4401 at once (a plain GET gets a 401)."""
        ws = web.WebSocketResponse()
        if not ws.can_prepare(request).ok:
            return self._unauthorized()
        await ws.prepare(request)
        await ws.close(code=WS_UNAUTHORIZED, message=b"unauthorized")
        return ws

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return await self._refuse_ws(request)
        ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=4096)
        await ws.prepare(request)
        transport = request.transport
        client = _Client(
            ws=ws,
            queue=asyncio.Queue(maxsize=self._queue_size),
            peer=str(request.remote),
            abort=transport.abort if transport is not None else (lambda: None),
        )
        # no await between the snapshot and joining the set: no beat can fall in between
        client.queue.put_nowait(self._scrub(self.snapshot().model_dump_json()))
        self._clients.add(client)
        client.writer = asyncio.create_task(self._writer(client), name=f"ws-writer:{client.peer}")
        self._tasks.add(client.writer)
        client.writer.add_done_callback(self._task_done)
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT and _is_ping(msg.data) and not client.dropped:
                    self._offer(client, PongMessage(ts=self._clock_ms()).model_dump_json())
                # everything else is ignored: the feed is read-only
        finally:
            if not client.dropped:
                client.dropped = True
                self._clients.discard(client)
                client.writer.cancel()
        return ws

    async def _api_trades(self, request: web.Request) -> web.Response:
        return await self._history_page(
            request, lambda since, limit: self._provider.trades_since(since, limit),
            lambda rows: TradesPage(trades=list(rows)),
        )  # fmt: skip

    async def _api_decisions(self, request: web.Request) -> web.Response:
        return await self._history_page(
            request, lambda _since, limit: self._provider.recent_decisions(limit),
            lambda rows: DecisionsPage(decisions=list(rows)),
        )  # fmt: skip

    async def _api_equity(self, request: web.Request) -> web.Response:
        return await self._history_page(
            request, lambda since, limit: self._provider.equity_since(since, limit),
            lambda rows: EquityPage(equity=list(rows)),
        )  # fmt: skip

    async def _history_page(
        self,
        request: web.Request,
        fetch: Callable[[int, int], Awaitable[Sequence[Any]]],
        page: Callable[[Sequence[Any]], BaseModel],
    ) -> web.Response:
        """One history route: auth, ``since``/``limit`` (400 when bad), the provider call (503 on failure)."""
        if not self._authorized(request):
            return self._unauthorized()
        try:
            since, limit = _int_param(request, "since", 0), _limit(request)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        rows = await self._history(fetch(since, limit))
        if rows is None:
            return web.json_response({"error": "history unavailable"}, status=503)
        return self._json(page(rows))

    async def _history(self, call: Awaitable[Sequence[_T]]) -> Sequence[_T] | None:
        """Await a provider call with a timeout; a failure is logged and answered 503."""
        try:
            return await asyncio.wait_for(call, self._history_timeout_s)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("history provider failed")
            return None

    def _json(self, page: BaseModel) -> web.Response:
        return web.Response(text=self._scrub(page.model_dump_json()), content_type="application/json")

    # ------------------------------------------------------------------ control API

    async def _api_control(self, request: web.Request) -> web.Response:
        """One admin action: auth (admin token only), body, the action; never a 500."""
        if self._admin is None or self._controls is None:
            return _error(404, "controls are disabled (no XYLEN_DASHBOARD_ADMIN_TOKEN)")
        given = _bearer(request).encode()
        if not hmac.compare_digest(given, self._admin):
            if self._token is not None and hmac.compare_digest(given, self._token):
                return _error(403, "the read token cannot act: use the admin token")
            return self._unauthorized()
        action = request.match_info["action"]
        if action not in _BODIES:
            return _error(404, f"unknown action {action[:32]!r}")
        try:
            raw = await request.read()
            body = _BODIES[action].model_validate_json(raw or b"{}")
        except ValidationError as exc:
            errors = exc.errors()
            if not errors:
                return _error(400, "body: invalid")
            where = ".".join(str(x) for x in errors[0]["loc"]) or "body"
            return _error(400, f"{where}: {errors[0]['msg']}")
        except web.HTTPRequestEntityTooLarge:
            return _error(400, "body: too large")
        controls = self._controls
        try:
            if isinstance(body, HaltBody):
                if body.flatten and body.confirm != "FLATTEN":
                    return _error(400, 'confirm: flattening needs confirm: "FLATTEN"')
                risk: RiskStateView | None = await controls.halt(body.flatten)
                action = "halt+flatten" if body.flatten else "halt"
            elif isinstance(body, ResetBreakerBody):
                risk = await controls.reset_breaker(body.name)
                if risk is None:
                    return _error(404, f"name: no breaker named {body.name[:64]!r}")
            elif action == "pause":
                risk = await controls.pause()
            else:
                risk = await controls.resume()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("dashboard control %s failed", action)
            return _error(503, f"{action} failed; see the coordinator's log")
        if risk is None:
            raise RuntimeError(f"dashboard control {action} returned no risk state")
        if risk != self._risk:
            self.publish_risk(risk)
        return self._json(ControlAnswer(action=action, risk=risk))

    # ------------------------------------------------------------------ static files

    async def _index(self, _request: web.Request) -> web.StreamResponse:
        index = self._static / "index.html" if self._static is not None else None
        if index is None or not index.is_file():
            return web.Response(text=NOT_BUILT_PAGE, content_type="text/html")
        return web.FileResponse(index, headers={"Cache-Control": "no-cache"})

    async def _asset(self, request: web.Request) -> web.StreamResponse:
        path = self._static_file("assets", request.match_info["path"])
        if path is None:
            return _error(404, "not found")
        return web.FileResponse(path, headers={"Cache-Control": IMMUTABLE})

    async def _top_file(self, request: web.Request) -> web.StreamResponse:
        path = self._static_file("", request.match_info["name"])
        if path is None or path.name == "index.html":
            return _error(404, "not found")
        return web.FileResponse(path, headers={"Cache-Control": "no-cache"})

    def _static_file(self, folder: str, name: str) -> Path | None:
        """The file ``folder/name`` of the build, or None (missing, or outside the build)."""
        if self._static is None:
            return None
        root = (self._static / folder).resolve()
        path = (root / name).resolve()
        return path if path.is_relative_to(root) and path.is_file() else None


class DashboardLogHandler(logging.Handler):
    """A logging handler that forwards records to :meth:`DashboardServer.publish_log` (thread-safe)."""

    def __init__(
        self, server: DashboardServer, loop: asyncio.AbstractEventLoop, level: int = logging.INFO
    ) -> None:
        super().__init__(level)
        self._server = server
        self._loop = loop

    def emit(self, record: logging.LogRecord) -> None:
        """Schedule the line on the server's loop (never publishes re-entrantly)."""
        try:
            line = LogLine(
                ts=int(record.created * 1000),
                level=record.levelname,
                logger=record.name,
                message=record.getMessage(),
            )
            if not self._loop.is_closed():
                self._loop.call_soon_threadsafe(self._server.publish_log, line)
        except Exception:  # a log handler must never raise into the code that logs
            self.handleError(record)


_BODIES: dict[str, type[BaseModel]] = {
    "pause": EmptyBody,
    "resume": EmptyBody,
    "halt": HaltBody,
    "reset-breaker": ResetBreakerBody,
}


def _bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else ""


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _is_ping(data: str) -> bool:
    text = data.strip()
    if text == "ping":
        return True
    if not text.startswith("{") or len(text) > 256:
        return False
    with contextlib.suppress(orjson.JSONDecodeError):
        parsed = orjson.loads(text)
        return isinstance(parsed, dict) and parsed.get("type") == "ping"
    return False


def _int_param(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}: expected an integer, got {raw[:32]!r}") from None
    if value < 0:
        raise ValueError(f"{name}: must be >= 0")
    return value


def _limit(request: web.Request) -> int:
    value = _int_param(request, "limit", DEFAULT_LIMIT)
    if not 1 <= value <= MAX_LIMIT:
        raise ValueError(f"limit: must be between 1 and {MAX_LIMIT}")
    return value


def _redaction_forms(secrets: Iterable[str]) -> tuple[str, ...]:
    """Each secret as it would appear raw and JSON-escaped (too-short values are refused)."""
    forms: set[str] = set()
    for secret in secrets:
        if not secret:
            continue
        if len(secret) < _MIN_REDACT_CHARS:
            raise ValueError(f"secrets shorter than {_MIN_REDACT_CHARS} characters cannot be redacted safely")
        forms.add(secret)
        forms.add(orjson.dumps(secret).decode()[1:-1])
    return tuple(sorted(forms, key=len, reverse=True))
