"""Graceful degradation: memory watch, in-flight queue limit, per-client rate limit, body size.

* :class:`MemoryGuard` samples ``psutil.virtual_memory().available`` every ``memory_poll_s``; under
  ``MIN_FREE_MEMORY_MB`` the server is *degraded*: ``/retrain`` answers 503 and scheduled
  retraining pauses, while ``/predict`` keeps serving.  With ``disk_path`` (the models folder) the
  same sample reads the free bytes of its filesystem (``xylen_model_disk_free_bytes``).
* :class:`AdmissionMiddleware` (plain ASGI, no per-request task or body copy) counts requests in
  flight on the guarded routes: beyond ``MAX_QUEUE_DEPTH`` it answers 429 at once, before reading
  the body; a ``Content-Length`` over ``MAX_BODY_BYTES`` gets 413; an optional token bucket per
  client address gives 429 with ``Retry-After``.  It also counts every request by route and status.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import orjson
import psutil

from model_server.metrics import ServerMetrics

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ROUTES = frozenset(
    {
        "/predict",
        "/retrain",
        "/health",
        "/metrics",
        "/admin/reload",
        "/admin/rollback",
        "/openapi.json",
        "/docs",
    }
)
UNGUARDED = frozenset({"/health", "/metrics", "/openapi.json", "/docs"})
_MB = 1024 * 1024


class MemoryGuard:
    """Tracks free host memory, this process's RSS and the free disk of the models folder;
    ``low`` (memory) means degraded."""

    def __init__(
        self, min_free_mb: float, poll_s: float, metrics: ServerMetrics, *, disk_path: Path | None = None
    ) -> None:
        self.min_free_mb = min_free_mb
        self.poll_s = poll_s
        self.metrics = metrics
        self.disk_path = disk_path
        self.available_mb = float("inf")
        self.disk_free_bytes: int | None = None
        self.low = False
        self._process = psutil.Process()

    def rss_mb(self) -> float:
        rss = float(self._process.memory_info().rss)
        self.metrics.rss.set(rss)
        return rss / _MB

    def sample(self) -> bool:
        """Read the host's available memory; returns (and stores) whether it is low."""
        available = float(psutil.virtual_memory().available)
        self.available_mb = available / _MB
        was_low, self.low = self.low, self.available_mb < self.min_free_mb
        if self.low != was_low:
            log = logger.warning if self.low else logger.info
            log(
                "free memory %.0f MB is %s the %.0f MB threshold: %s",
                self.available_mb,
                "under" if self.low else "back over",
                self.min_free_mb,
                "retraining paused, /retrain answers 503" if self.low else "retraining resumes",
            )
        self.metrics.available.set(available)
        self.metrics.degraded.set(1 if self.low else 0)
        self.rss_mb()
        self.disk_free()
        return self.low

    def disk_free(self) -> int | None:
        """Free bytes on the filesystem of ``disk_path`` (its nearest existing parent while the
        folder is not created yet); None without a path or when it cannot be read."""
        if self.disk_path is None:
            return None
        path = self.disk_path
        while not path.exists() and path.parent != path:
            path = path.parent
        try:
            free = shutil.disk_usage(path).free
        except OSError as exc:
            logger.warning("free disk of %s unreadable: %s", path, exc)
            return None
        self.disk_free_bytes = free
        self.metrics.set_disk_free(free)
        return free

    async def run(self) -> None:
        """Sample forever (a supervised background task)."""
        while True:
            self.sample()
            await asyncio.sleep(self.poll_s)


class RateLimiter:
    """A token bucket per client address (``rate`` tokens per second, at most ``burst``)."""

    def __init__(self, rate: float, burst: int, max_clients: int = 10_000) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.max_clients = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, client: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        if len(self._buckets) >= self.max_clients and client not in self._buckets:
            self._buckets.clear()  # bounded memory; a reset only ever lets clients through
        self._buckets[client] = (tokens, now)
        return allowed


async def _reject(send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]]) -> None:
    body = orjson.dumps({"detail": detail})
    all_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": all_headers + headers})
    await send({"type": "http.response.body", "body": body})


class AdmissionMiddleware:
    """Queue-depth, rate and body-size admission plus per-route request counting (pure ASGI)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: ServerMetrics,
        max_queue_depth: int,
        max_body_bytes: int,
        limiter: RateLimiter | None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_queue_depth = max_queue_depth
        self.max_body_bytes = max_body_bytes
        self.limiter = limiter
        self.inflight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        route = path if path in ROUTES else "other"
        status = 500

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        if path in UNGUARDED:
            try:
                await self.app(scope, receive, send_counted)
            finally:
                self.metrics.request(route, status)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            code, reason, detail, headers = refusal
            self.metrics.rejected.labels(reason).inc()
            self.metrics.request(route, code)
            await _reject(send, code, detail, headers)
            return
        self.inflight += 1
        self.metrics.inflight.inc()
        try:
            await self.app(scope, receive, send_counted)
        finally:
            self.inflight -= 1
            self.metrics.inflight.dec()
            self.metrics.request(route, status)

    def _refusal(self, scope: Scope) -> tuple[int, str, str, list[tuple[bytes, bytes]]] | None:
        if self.inflight >= self.max_queue_depth:
            detail = (
                f"server busy: {self.inflight} requests in flight (MAX_QUEUE_DEPTH {self.max_queue_depth})"
            )
            return 429, "queue", detail, [(b"retry-after", b"1")]
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    return 400, "bad_length", "invalid Content-Length header", []
                if length > self.max_body_bytes:
                    detail = f"body of {length} bytes exceeds MAX_BODY_BYTES {self.max_body_bytes}"
                    return 413, "body_size", detail, []
                break
        if self.limiter is not None:
            client = scope.get("client")
            if not self.limiter.allow(client[0] if client else "-"):
                return 429, "rate", "rate limit exceeded", [(b"retry-after", b"1")]
        return None
