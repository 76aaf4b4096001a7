"""User-data stream: listen keys and the WebSocket that carries an account's events.

- ``POST /fapi/v1/listenKey`` returns the account's live key (a repeat POST returns the same key
  and extends it), ``PUT`` extends it by the lifetime (60 min) or answers ``-1125 "This listenKey
  does not exist."``, ``DELETE`` removes it and closes its streams (``{}``).
- Streams: ``/private/ws?listenKey=KEY`` (both clients) and ``/ws/KEY`` (the legacy
  form).  An unknown or expired key is refused before the upgrade with 400 ``-1125``.
- Events from the service (``callback(account, event)``) are serialised once and put on every
  stream of the account through a bounded per-connection :class:`asyncio.Queue`; the callback
  never blocks.  A stream whose queue is full is closed (1008, "slow consumer") rather than
  slowing the exchange.  One sender task per stream sends in order; the drop and delay faults
  are applied per stream, and delays never reorder events.
- When a key expires the sweep sends ``{"e":"listenKeyExpired","E":ms,"listenKey":KEY}`` to its
  streams and closes them (1000).
- Keep-alive: aiohttp's heartbeat pings every ``ws_heartbeat_s`` (Binance: 3 min) and drops a
  stream whose pong does not come within half that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSCloseCode, web

from paper_exchange.faults import Faults
from paper_exchange.protocol import BinanceError, json_dumps
from xylen.timeutil import wall_ms

logger = logging.getLogger(__name__)

MSG_NO_LISTEN_KEY = "This listenKey does not exist."
_CLOSE = None  # queue sentinel: send what is queued, then close normally


@dataclass(slots=True)
class _Key:
    key: str
    account: str
    expires_at: float


class ListenKeys:
    """One live listen key per account, expiring ``ttl_s`` after its last create/keep-alive."""

    def __init__(self, ttl_s: float = 3600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._by_account: dict[str, _Key] = {}
        self._by_key: dict[str, _Key] = {}

    def _live(self, account: str) -> _Key | None:
        entry = self._by_account.get(account)
        if entry is None or entry.expires_at <= self._clock():
            return None
        return entry

    def create(self, account: str) -> str:
        """The account's live key (extended), or a new one."""
        entry = self._live(account)
        if entry is None:
            old = self._by_account.pop(account, None)
            if old is not None:
                self._by_key.pop(old.key, None)
            entry = _Key(secrets.token_hex(32), account, 0.0)
            self._by_account[account] = entry
            self._by_key[entry.key] = entry
        entry.expires_at = self._clock() + self.ttl_s
        return entry.key

    def keepalive(self, account: str, key: str | None) -> str:
        """Extend the account's live key; ``-1125`` when there is none or ``key`` is another."""
        entry = self._live(account)
        if entry is None or (key and key != entry.key):
            raise BinanceError(-1125, MSG_NO_LISTEN_KEY)
        entry.expires_at = self._clock() + self.ttl_s
        return entry.key

    def delete(self, account: str, key: str | None) -> str | None:
        """Remove the account's key (if ``key`` names it, or no key is given); return it."""
        entry = self._by_account.get(account)
        if entry is None or (key and key != entry.key):
            return None
        del self._by_account[account]
        self._by_key.pop(entry.key, None)
        return entry.key

    def account_of(self, key: str) -> str | None:
        """The account of a live key, else ``None``."""
        entry = self._by_key.get(key)
        if entry is None or entry.expires_at <= self._clock():
            return None
        return entry.account

    def pop_expired(self) -> list[tuple[str, str]]:
        """Remove and return ``(key, account)`` of every expired key."""
        now = self._clock()
        gone = [entry for entry in self._by_key.values() if entry.expires_at <= now]
        for entry in gone:
            del self._by_key[entry.key]
            if self._by_account.get(entry.account) is entry:
                del self._by_account[entry.account]
        return [(entry.key, entry.account) for entry in gone]


@dataclass(eq=False)
class _Stream:
    ws: web.WebSocketResponse
    account: str
    key: str
    path: str
    queue: asyncio.Queue[tuple[float, str] | None]
    sender: asyncio.Task[None] | None = None
    close_code: int = WSCloseCode.OK
    close_reason: bytes = b""
    sent: int = 0
    dropped: int = field(default=0)


class UserStreamHub:
    """Listen-key endpoints, the stream WebSocket handler and the fan-out of service events."""

    def __init__(
        self,
        keys: ListenKeys,
        faults: Faults,
        queue_size: int = 1024,
        heartbeat_s: float = 180.0,
        send_timeout_s: float = 10.0,
    ) -> None:
        self.keys = keys
        self.faults = faults
        self.queue_size = queue_size
        self.heartbeat_s = heartbeat_s
        self.send_timeout_s = send_timeout_s
        self._by_account: dict[str, dict[_Stream, None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0

    # -- REST: listen keys ------------------------------------------------------------------

    def create(self, account: str, params: Mapping[str, str]) -> dict[str, Any]:
        return {"listenKey": self.keys.create(account)}

    def keepalive(self, account: str, params: Mapping[str, str]) -> dict[str, Any]:
        return {"listenKey": self.keys.keepalive(account, params.get("listenKey"))}

    def delete(self, account: str, params: Mapping[str, str]) -> dict[str, Any]:
        key = self.keys.delete(account, params.get("listenKey"))
        if key is not None:
            self._close_key(key, WSCloseCode.OK, b"listenKey deleted")
        return {}

    # -- fan-out ------------------------------------------------------------------------------

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Remember the event loop so events published from another thread are handed over."""
        self._loop = loop
        self._loop_thread = threading.get_ident()

    def publish(self, account: str, event: dict[str, Any]) -> None:
        """The service callback: queue ``event`` on every stream of ``account``; never blocks."""
        if self._loop is not None and threading.get_ident() != self._loop_thread:
            self._loop.call_soon_threadsafe(self._publish, account, event)
            return
        self._publish(account, event)

    def _publish(self, account: str, event: dict[str, Any]) -> None:
        streams = self._by_account.get(account)
        if not streams:
            return
        text = json_dumps(event).decode()
        kind = str(event.get("e", ""))
        now = time.monotonic()
        faults = self.faults
        for stream in list(streams):
            if faults.drop_event(stream.path, kind):
                stream.dropped += 1
                continue
            deliver_at = now + faults.event_delay_s(stream.path, kind)
            try:
                stream.queue.put_nowait((deliver_at, text))
            except asyncio.QueueFull:
                logger.warning("user stream of %s is too slow; disconnecting it", account)
                self._abort(stream, WSCloseCode.POLICY_VIOLATION, b"slow consumer")

    def _abort(self, stream: _Stream, code: int, reason: bytes) -> None:
        stream.close_code, stream.close_reason = code, reason
        self._unregister(stream)
        if stream.sender is not None:
            stream.sender.cancel()

    def _close_key(self, key: str, code: int, reason: bytes, last: dict[str, Any] | None = None) -> None:
        text = json_dumps(last).decode() if last is not None else None
        for streams in list(self._by_account.values()):
            for stream in list(streams):
                if stream.key != key:
                    continue
                stream.close_code, stream.close_reason = code, reason
                self._unregister(stream)
                try:
                    if text is not None:
                        stream.queue.put_nowait((0.0, text))
                    stream.queue.put_nowait(_CLOSE)
                except asyncio.QueueFull:
                    if stream.sender is not None:
                        stream.sender.cancel()

    def expire(self) -> int:
        """Send ``listenKeyExpired`` to the streams of expired keys and close them; the count."""
        expired = self.keys.pop_expired()
        for key, _account in expired:
            event = {"e": "listenKeyExpired", "E": wall_ms(), "listenKey": key}
            self._close_key(key, WSCloseCode.OK, b"listenKey expired", event)
        return len(expired)

    async def run_expiry(self, interval_s: float) -> None:
        """Sweep expired keys every ``interval_s`` until cancelled."""
        while True:
            try:
                self.expire()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("listen-key sweep failed; continuing")
            await asyncio.sleep(interval_s)

    async def close_all(self) -> None:
        """Close every stream (server shutdown)."""
        streams = [s for group in self._by_account.values() for s in group]
        for stream in streams:
            self._abort(stream, WSCloseCode.GOING_AWAY, b"server shutdown")
            with contextlib.suppress(Exception):
                await asyncio.wait_for(stream.ws.close(code=WSCloseCode.GOING_AWAY), self.send_timeout_s)

    def stream_count(self, account: str | None = None) -> int:
        if account is not None:
            return len(self._by_account.get(account, ()))
        return sum(len(group) for group in self._by_account.values())

    def _unregister(self, stream: _Stream) -> None:
        group = self._by_account.get(stream.account)
        if group is not None:
            group.pop(stream, None)
            if not group:
                del self._by_account[stream.account]

    # -- WebSocket ----------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """``/private/ws?listenKey=KEY`` and ``/ws/KEY``."""
        key = request.match_info.get("key") or request.query.get("listenKey", "")
        account = self.keys.account_of(key) if key else None
        if account is None:
            body = json_dumps({"code": -1125, "msg": MSG_NO_LISTEN_KEY})
            return web.Response(status=400, body=body, content_type="application/json")
        ws = web.WebSocketResponse(heartbeat=self.heartbeat_s)
        await ws.prepare(request)
        path = request.path
        stream = _Stream(ws, account, key, path, asyncio.Queue(self.queue_size))
        self._by_account.setdefault(account, {})[stream] = None
        stream.sender = asyncio.create_task(self._send_loop(stream), name=f"user-stream-send:{account}")
        reader = asyncio.create_task(self._read_loop(ws), name=f"user-stream-read:{account}")
        try:
            await asyncio.wait({stream.sender, reader}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._unregister(stream)
            for task in (stream.sender, reader):
                task.cancel()
            for task in (stream.sender, reader):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if not ws.closed:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(
                        ws.close(code=stream.close_code, message=stream.close_reason), self.send_timeout_s
                    )
        return ws

    async def _send_loop(self, stream: _Stream) -> None:
        while True:
            item = await stream.queue.get()
            if item is _CLOSE:
                return
            if item is None:
                raise RuntimeError("a stream queue item without content")
            deliver_at, text = item
            wait = deliver_at - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                await asyncio.wait_for(stream.ws.send_str(text), self.send_timeout_s)
            except (ConnectionError, asyncio.TimeoutError):
                logger.info("user stream of %s: send failed; closing", stream.account)
                stream.close_code = WSCloseCode.GOING_AWAY
                return
            stream.sent += 1

    @staticmethod
    async def _read_loop(ws: web.WebSocketResponse) -> None:
        async for _msg in ws:  # clients send nothing we act on; reading processes pongs and closes
            pass
