"""HTTP transport: one aiohttp session, signing, encoding, rate limits, and error translation.

Every request: wait for the :class:`RateLimiter` (its turn by priority, weight, ORDERS, any
429/418 pause; its fixed windows follow our estimate of the exchange's clock,
:meth:`Transport.now_ms`; the limiter is told when the request is over) -> encode the
parameters once (query for GET, form body otherwise) -> sign when needed (timestamp from the local
clock plus the offset synced from ``/fapi/v1/time``) -> send with a per-request timeout -> feed the
reply's rate-limit headers to the limiter -> parse the JSON, or translate the failure into
:mod:`coordinator.exchange.errors` HERE, at the boundary (nothing from aiohttp leaks out):

=====================================  =======================================================
failure                                becomes
=====================================  =======================================================
no connection / connect timeout        RetryableError(sent=False)
timeout or dropped connection          RetryableError (idempotent) / UnknownOutcomeError (order)
2xx whose body is not valid JSON       RetryableError (idempotent) / UnreadableReplyError, an
                                       UnknownOutcomeError (order: the venue accepted it)
429, 418                               RateLimitError (the limiter paused: Retry-After)
5xx "Service Unavailable", "Internal   RetryableError (failed, not executed)
error", -1008, -1001
other 5xx, 503 "Unknown error",        RetryableError (idempotent) / UnknownOutcomeError (order)
-1000, -1006, -1007
-1021                                  ClockSkewError (resync + retry once, in ``retry``)
401, 403, 404, -2014/-2015/-1022/-1002 FatalError
-2011, -2013, -1125                    NotFoundError
any other 4xx                          RejectedError(code, msg)
=====================================  =======================================================
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import orjson
from yarl import URL

from coordinator.exchange.auth import Signer, encode_params
from coordinator.exchange.constants import (
    API_KEY_HEADER,
    CODE_TIMESTAMP,
    FAILED_5XX_MESSAGES,
    FATAL_CODES,
    NOT_FOUND_CODES,
    RETRY_AFTER_HEADER,
    RETRYABLE_CODES,
    TIME,
    UNKNOWN_OUTCOME_CODES,
    Endpoint,
)
from coordinator.exchange.errors import (
    ClockSkewError,
    ExchangeError,
    FatalError,
    NotFoundError,
    RateLimitError,
    RejectedError,
    RetryableError,
    UnknownOutcomeError,
    UnreadableReplyError,
)
from coordinator.exchange.priority import Priority, effective
from coordinator.exchange.rate_limit import RateLimiter
from coordinator.exchange.retry import RetryPolicy, with_retries

logger = logging.getLogger(__name__)

FORM = "application/x-www-form-urlencoded"
DEFAULT_BAN_S = 120.0
DEFAULT_RETRY_AFTER_S = 60.0


def translate(endpoint: Endpoint, status: int, body: bytes, retry_after: str | None) -> ExchangeError:
    """The error type for a non-2xx reply (table in the module docstring)."""
    code: int | None = None
    msg = ""
    try:
        data = orjson.loads(body) if body else {}
        if isinstance(data, dict):
            raw_code = data.get("code")
            code = (
                int(raw_code)
                if isinstance(raw_code, int | str) and str(raw_code).lstrip("-").isdigit()
                else None
            )
            msg = str(data.get("msg", ""))
    except orjson.JSONDecodeError:
        msg = body[:200].decode("utf-8", "replace")
    msg = msg or f"HTTP {status}"
    where = f"{endpoint.method} {endpoint.path}"
    common: dict[str, Any] = {"code": code, "status": status, "endpoint": where}
    if status in (418, 429):
        banned = status == 418
        try:
            wait = float(retry_after) if retry_after else (DEFAULT_BAN_S if banned else DEFAULT_RETRY_AFTER_S)
        except ValueError:
            wait = DEFAULT_BAN_S if banned else DEFAULT_RETRY_AFTER_S
        return RateLimitError(msg, retry_after_s=wait, banned=banned, **common)
    if status >= 500 or code in UNKNOWN_OUTCOME_CODES:
        failed = code in RETRYABLE_CODES or any(text in msg for text in FAILED_5XX_MESSAGES)
        if failed or endpoint.idempotent:
            return RetryableError(msg, **common)
        return UnknownOutcomeError(msg, **common)
    if code == CODE_TIMESTAMP:
        return ClockSkewError(msg, **common)
    if code in FATAL_CODES or status in (401, 403, 404, 405):
        return FatalError(msg, **common)
    if code in NOT_FOUND_CODES:
        return NotFoundError(msg, **common)
    if code in RETRYABLE_CODES:
        return RetryableError(msg, **common)
    return RejectedError(msg, **common)


class Transport:
    """Signed/unsigned REST calls to one base URL (see the module docstring)."""

    def __init__(
        self,
        base_url: str,
        signer: Signer,
        *,
        limiter: RateLimiter | None = None,
        retry: RetryPolicy | None = None,
        recv_window_ms: int = 5000,
        timeout_s: float = 10.0,
        session: aiohttp.ClientSession | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.limiter = limiter or RateLimiter()
        self.retry_policy = retry or RetryPolicy()
        self.recv_window_ms = recv_window_ms
        self.timeout_s = timeout_s
        self.time_offset_ms = 0
        self.sent: collections.Counter[str] = collections.Counter()  # "METHOD path" -> requests sent
        self.statuses: collections.Counter[int] = collections.Counter()  # HTTP status -> replies
        self._signer = signer
        self._clock = clock
        self._session = session
        self._own_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._key_headers = {API_KEY_HEADER: signer.api_key}
        self._form_headers = {API_KEY_HEADER: signer.api_key, "Content-Type": FORM}
        self.limiter.exchange_ms = self.now_ms  # the exchange's windows are on its clock
        self.limiter.track_replies = True  # send() settles every request it counted

    # -- life cycle ------------------------------------------------------------------------------
    @property
    def session(self) -> aiohttp.ClientSession:
        """The aiohttp session (created on first use, inside the running loop)."""
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=64, ttl_dns_cache=300, enable_cleanup_closed=True)
            self._session = aiohttp.ClientSession(
                connector=connector, json_serialize=lambda o: orjson.dumps(o).decode()
            )
        return self._session

    async def close(self) -> None:
        """Close the session if this transport created it."""
        if self._session is not None and self._own_session and not self._session.closed:
            await self._session.close()

    def now_ms(self) -> int:
        """The exchange's clock as we estimate it: local time plus the synced offset."""
        return int(self._clock() * 1000) + self.time_offset_ms

    async def sync_time(self) -> int:
        """Measure the offset to ``/fapi/v1/time`` (midpoint of the round trip); returns it in ms."""
        before = self._clock()
        reply = await self.send(TIME, {})
        after = self._clock()
        server_ms = int(reply["serverTime"])
        self.time_offset_ms = server_ms - int((before + after) * 500)
        logger.info("clock offset to the exchange: %d ms", self.time_offset_ms)
        return self.time_offset_ms

    # -- requests --------------------------------------------------------------------------------
    async def request(
        self,
        endpoint: Endpoint,
        params: Mapping[str, str] | None = None,
        *,
        timeout_s: float | None = None,
        priority: Priority | None = None,
    ) -> Any:
        """Send with the retry policy of ``endpoint`` (see :mod:`coordinator.exchange.retry`).

        ``priority``: the rate limiter's order for this request (default: the endpoint's), raised
        by an enclosing :func:`~coordinator.exchange.priority.raised_to`.
        """
        values = params or {}
        policy = self.retry_policy
        return await with_retries(
            lambda: self.send(endpoint, values, timeout_s, priority), endpoint, policy, self.sync_time
        )

    async def send(
        self,
        endpoint: Endpoint,
        params: Mapping[str, str],
        timeout_s: float | None = None,
        priority: Priority | None = None,
    ) -> Any:
        """One attempt: limiter, encode, sign, send, translate.  Returns the parsed JSON."""
        level = effective(priority if priority is not None else endpoint.default_priority)
        await self.limiter.acquire(endpoint.weight_of(params), 1 if endpoint.is_order else 0, level)
        try:
            return await self._send_counted(endpoint, params, timeout_s)
        finally:
            self.limiter.settle()

    async def _send_counted(
        self, endpoint: Endpoint, params: Mapping[str, str], timeout_s: float | None
    ) -> Any:
        if endpoint.signed:
            payload = self._signer.signed_payload(params, self.now_ms(), self.recv_window_ms)
        else:
            payload = encode_params(params)
        url = self.base_url + endpoint.path
        data: bytes | None = None
        headers: Mapping[str, str] | None = None
        if endpoint.method == "GET":
            if payload:
                url = f"{url}?{payload}"
            if endpoint.signed or endpoint.keyed:
                headers = self._key_headers
        else:
            headers = self._form_headers
            data = payload.encode()
        timeout = self._timeout if timeout_s is None else aiohttp.ClientTimeout(total=timeout_s)
        self.sent[f"{endpoint.method} {endpoint.path}"] += 1
        where = f"{endpoint.method} {endpoint.path}"
        try:
            async with self.session.request(
                endpoint.method, URL(url, encoded=True), data=data, headers=headers, timeout=timeout
            ) as response:
                body = await response.read()
                status = response.status
                self.statuses[status] += 1
                self.limiter.observe(response.headers)
                retry_after = response.headers.get(RETRY_AFTER_HEADER)
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            raise RetryableError(f"no connection: {exc}", sent=False, endpoint=where) from exc
        except asyncio.TimeoutError as exc:
            seconds = timeout.total
            if endpoint.idempotent:
                raise RetryableError(f"timed out after {seconds} s", endpoint=where) from exc
            raise UnknownOutcomeError(
                f"timed out after {seconds} s; it may have executed", endpoint=where
            ) from exc
        except aiohttp.ClientError as exc:
            if endpoint.idempotent:
                raise RetryableError(f"connection failed: {exc!r}", endpoint=where) from exc
            raise UnknownOutcomeError(
                f"connection failed: {exc!r}; it may have executed", endpoint=where
            ) from exc
        if 200 <= status < 300:
            try:
                return orjson.loads(body) if body else {}
            except orjson.JSONDecodeError as exc:
                if endpoint.idempotent:
                    raise RetryableError(
                        f"invalid JSON reply: {body[:100]!r}", status=status, endpoint=where
                    ) from exc
                raise UnreadableReplyError(
                    f"HTTP {status} with an unreadable body: {body[:100]!r}; it was executed",
                    status=status,
                    endpoint=where,
                ) from exc
        error = translate(endpoint, status, body, retry_after)
        if isinstance(error, RateLimitError):
            self.limiter.pause(error.retry_after_s or 0.0, banned=error.banned)
        raise error
