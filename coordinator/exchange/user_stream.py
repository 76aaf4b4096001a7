"""The user-data stream: listen key, WebSocket, reconnects, parsed events on a bounded queue.

- A listen key is created (``POST /fapi/v1/listenKey``) and kept alive (``PUT``) every
  ``keepalive_interval_s`` (30 min by default; keys live 60 min).  A keep-alive answered -1125, or a
  ``listenKeyExpired`` event, drops the key: the connection is closed and reopened with a new one.
- The connection (``<ws root>/private/ws?listenKey=KEY``) is reopened after any drop with jittered
  exponential backoff; aiohttp's heartbeat pings it (Binance drops silent peers).
- Every message is parsed into a :mod:`schemas` event and put on :attr:`UserStream.events`, a
  bounded :class:`asyncio.Queue`.  If the consumer falls behind, the newest events are dropped
  (counted in :attr:`UserStream.dropped`) rather than blocking the socket.
- Health for the order manager: :attr:`connected`, :meth:`last_event_age`, :meth:`is_healthy`
  (connected and not silent for longer than allowed), and :meth:`take_resync` -- True once after a
  reconnect, a dropped event or a message that fails parsing or validation (counted in
  :attr:`UserStream.invalid`), when events may have been missed and REST must fill the gap.

Both loops are supervised: they re-raise ``CancelledError``, log and back off on anything else;
:meth:`UserStream.stop` cancels them and waits (bounded) for them to finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp
import orjson
from pydantic import ValidationError

from coordinator.exchange.client import BinanceFuturesClient
from coordinator.exchange.errors import ExchangeError, FatalError, NotFoundError
from coordinator.exchange.schemas import ListenKeyExpired, UserEvent, parse_event

logger = logging.getLogger(__name__)


class UserStream:
    """The account's event stream (see the module docstring); ``start()``, read ``events``, ``stop()``."""

    def __init__(
        self,
        client: BinanceFuturesClient,
        *,
        queue_size: int = 10_000,
        keepalive_interval_s: float = 1800.0,
        heartbeat_s: float = 60.0,
        connect_timeout_s: float = 10.0,
        reconnect_base_s: float = 0.5,
        reconnect_max_s: float = 30.0,
        shutdown_timeout_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.events: asyncio.Queue[UserEvent] = asyncio.Queue(maxsize=queue_size)
        self.keepalive_interval_s = keepalive_interval_s
        self.heartbeat_s = heartbeat_s
        self.connect_timeout_s = connect_timeout_s
        self.reconnect_base_s = reconnect_base_s
        self.reconnect_max_s = reconnect_max_s
        self.shutdown_timeout_s = shutdown_timeout_s
        self.listen_key: str | None = None
        self.connected = False
        self.connections = 0
        self.dropped = 0
        self.invalid = 0  # messages that failed parsing or validation (each one requests a resync)
        self._clock = clock
        self._last_message_at = clock()
        self._resync = False
        self._ws: aiohttp.ClientWebSocketResponse[bool] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._connected_event = asyncio.Event()

    # -- life cycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Create the listen key and start the connection and keep-alive loops."""
        if self._tasks:
            raise RuntimeError("user stream already started")
        self.listen_key = await self.client.create_listen_key()
        self._spawn(self._connection_loop(), "user-stream-connection")
        self._spawn(self._keepalive_loop(), "user-stream-keepalive")

    async def stop(self) -> None:
        """Cancel the loops, close the socket, delete the listen key (best effort)."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=self.shutdown_timeout_s)
            for task in pending:
                logger.error(
                    "user-stream task %s did not stop within %.1f s", task.get_name(), self.shutdown_timeout_s
                )
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws.close(), self.shutdown_timeout_s)
        key, self.listen_key = self.listen_key, None
        if key is not None:
            try:
                await self.client.close_listen_key(key)
            except ExchangeError as exc:
                logger.warning("could not delete the listen key: %s", exc)
        self.connected = False

    async def wait_connected(self, timeout_s: float) -> None:
        """Wait until the socket is open (``asyncio.TimeoutError`` after ``timeout_s``)."""
        await asyncio.wait_for(self._connected_event.wait(), timeout_s)

    # -- health --------------------------------------------------------------------------------
    def last_event_age(self) -> float:
        """Seconds since the last message (or since the stream was created / last connected)."""
        return self._clock() - self._last_message_at

    def is_healthy(self, max_silence_s: float) -> bool:
        """Connected and heard from within ``max_silence_s``: otherwise poll REST instead."""
        return self.connected and self.last_event_age() <= max_silence_s

    def take_resync(self) -> bool:
        """True once after a reconnect, a dropped or an unreadable event (REST must fill the gap)."""
        flag, self._resync = self._resync, False
        return flag

    # -- loops ---------------------------------------------------------------------------------
    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(self._task_done)
        self._tasks.append(task)

    @staticmethod
    def _task_done(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.error("user-stream task %s crashed", task.get_name(), exc_info=task.exception())

    def _backoff(self, attempt: int) -> float:
        return random.uniform(  # nosec B311 # reconnect jitter, not a secret
            0.0, min(self.reconnect_max_s, self.reconnect_base_s * 2 ** max(attempt - 1, 0))
        )

    async def _connection_loop(self) -> None:
        attempt = 0
        while True:
            try:
                if self.listen_key is None:
                    self.listen_key = await self.client.create_listen_key()
                await self._connect_and_read(self.listen_key)
                attempt = 0  # a connection that opened and closed: start the backoff afresh
                logger.warning("user stream closed by the server; reconnecting")
            except asyncio.CancelledError:
                raise
            except aiohttp.WSServerHandshakeError as exc:
                logger.warning("user stream refused (HTTP %s); getting a new listen key", exc.status)
                self.listen_key = None
            except FatalError:
                logger.exception("user stream: credentials refused; retrying slowly")
                attempt = max(attempt, 6)
            except Exception as exc:
                logger.warning("user stream connection failed: %r", exc)
            finally:
                self._closed()
            attempt += 1
            await asyncio.sleep(self._backoff(attempt))

    async def _connect_and_read(self, key: str) -> None:
        url = self.client.user_stream_url(key)
        session = self.client.transport.session
        ws = await asyncio.wait_for(
            session.ws_connect(url, heartbeat=self.heartbeat_s), self.connect_timeout_s
        )
        self._ws = ws
        try:
            self.connected = True
            self._connected_event.set()
            self._last_message_at = self._clock()
            if self.connections:
                self._resync = True
            self.connections += 1
            logger.info("user stream connected (connection %d)", self.connections)
            async for message in ws:
                if message.type is aiohttp.WSMsgType.TEXT:
                    if self._on_text(message.data):
                        return
                elif message.type is aiohttp.WSMsgType.ERROR:
                    logger.warning("user stream error: %r", ws.exception())
                    return
        finally:
            await ws.close()

    def _closed(self) -> None:
        if self.connected:
            self._resync = True
        self.connected = False
        self._connected_event.clear()
        self._ws = None

    def _on_text(self, text: str) -> bool:
        """Handle one message; True when the connection must be reopened (key expired)."""
        self._last_message_at = self._clock()
        try:
            event = parse_event(orjson.loads(text))
        except (orjson.JSONDecodeError, ValidationError, TypeError, AttributeError) as exc:
            # The message may have been an order or account update we cannot apply: what it said
            # must come from REST instead, exactly as after a dropped event.
            self.invalid += 1
            self._resync = True
            logger.warning(
                "user stream: unreadable message skipped, resync requested (%s): %.200s", exc, text
            )
            return False
        try:
            self.events.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1
            self._resync = True
            logger.error("user stream queue full (%d); event %s dropped", self.events.maxsize, event.e)
        if isinstance(event, ListenKeyExpired):
            logger.warning("listen key expired; reconnecting with a new one")
            self.listen_key = None
            return True
        return False

    async def _keepalive_loop(self) -> None:
        while True:
            await asyncio.sleep(self.keepalive_interval_s)
            key = self.listen_key
            if key is None:
                continue
            try:
                await self.client.keepalive_listen_key(key)
            except asyncio.CancelledError:
                raise
            except NotFoundError:
                logger.warning("listen key unknown to the exchange; reconnecting with a new one")
                if self.listen_key == key:
                    self.listen_key = None
                    if self._ws is not None:
                        await self._ws.close()
            except Exception:
                logger.exception("listen-key keep-alive failed; trying again next interval")
