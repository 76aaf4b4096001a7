"""The user-data stream against the REAL paper exchange: fills, server drops, expired keys, silence."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

from coordinator.exchange import UserStream
from coordinator.exchange.schemas import OrderTradeUpdate, UserEvent
from coordinator.tests.test_exchange_support import (
    SYMBOL,
    candles,  # noqa: F401 - fixture
    make_client,
    paper_exchange,
)
from paper_exchange.app import HUB_KEY


async def fill_event(stream: UserStream, client_order_id: str, timeout_s: float = 5.0) -> OrderTradeUpdate:
    """The next ORDER_TRADE_UPDATE for ``client_order_id`` with status FILLED."""

    async def wait() -> OrderTradeUpdate:
        while True:
            event: UserEvent = await stream.events.get()
            if isinstance(event, OrderTradeUpdate) and event.o.c == client_order_id and event.o.X == "FILLED":
                return event

    return await asyncio.wait_for(wait(), timeout_s)


async def until(condition: object, timeout_s: float = 5.0) -> None:
    async def poll() -> None:
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout_s)


def test_user_stream_fills_drops_expiry_and_silence(candles: Path, tmp_path: Path) -> None:  # noqa: F811
    async def scenario() -> None:
        async with paper_exchange(candles, tmp_path) as (url, app):
            client = await make_client(url)
            stream = UserStream(client, heartbeat_s=5.0, reconnect_base_s=0.05, reconnect_max_s=0.2)
            try:
                await stream.start()
                await stream.wait_connected(5.0)
                assert stream.connections == 1 and not stream.take_resync()

                await client.new_order(SYMBOL, "BUY", "MARKET", Decimal("0.010"), client_order_id="t-ws-1")
                event = await fill_event(stream, "t-ws-1")
                assert event.o.x == "TRADE" and event.o.z == Decimal("0.010") and event.o.L > 0
                assert stream.last_event_age() < 1.0 and stream.is_healthy(max_silence_s=5.0)

                # the server drops every stream: we reconnect and ask for a REST resync
                await app[HUB_KEY].close_all()
                await until(lambda: stream.connections == 2 and stream.connected)
                assert stream.take_resync() and not stream.take_resync()
                await client.new_order(SYMBOL, "SELL", "MARKET", Decimal("0.010"), client_order_id="t-ws-2")
                await fill_event(stream, "t-ws-2")

                # the key is deleted on the exchange: the stream gets a new key and carries on
                old_key = stream.listen_key
                assert old_key is not None
                await client.close_listen_key(old_key)
                await until(
                    lambda: stream.connections == 3 and stream.connected and stream.listen_key is not None
                )
                await client.new_order(SYMBOL, "BUY", "MARKET", Decimal("0.010"), client_order_id="t-ws-3")
                await fill_event(stream, "t-ws-3")

                # silence: connected, but nothing heard for longer than allowed -> not healthy
                while not stream.events.empty():
                    stream.events.get_nowait()
                await asyncio.sleep(0.4)
                assert stream.connected and stream.last_event_age() >= 0.4
                assert not stream.is_healthy(max_silence_s=0.3)
                assert stream.is_healthy(max_silence_s=60.0)
            finally:
                await stream.stop()
                await client.close()
            assert not stream.connected and stream.listen_key is None

    asyncio.run(scenario())


def test_keepalive_and_a_stopped_stream(candles: Path, tmp_path: Path) -> None:  # noqa: F811
    async def scenario() -> None:
        async with paper_exchange(candles, tmp_path) as (url, _app):
            client = await make_client(url)
            stream = UserStream(client, keepalive_interval_s=0.05, reconnect_base_s=0.05)
            try:
                await stream.start()
                await stream.wait_connected(5.0)
                await until(lambda: client.transport.sent["PUT /fapi/v1/listenKey"] >= 3)
                assert stream.connections == 1  # keep-alives do not disturb the connection
            finally:
                await stream.stop()
                await client.close()

    asyncio.run(scenario())
