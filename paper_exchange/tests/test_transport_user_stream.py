"""User-data stream: listenKey lifecycle, WebSocket delivery, expiry, slow clients, ws faults.

Real HTTP and WebSocket on 127.0.0.1 against ``FakeService``, a fake at the seam
(``test_transport_support``) that emits one ``ORDER_TRADE_UPDATE`` per new or cancelled order.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from typing import Any

import aiohttp
import pytest

from paper_exchange.faults import FaultConfig, Faults
from paper_exchange.tests.test_transport_support import (
    KEY,
    OTHER_KEY,
    FakeService,
    running_app,
    settings,
    signed,
)
from paper_exchange.user_stream import ListenKeys

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def _call(
    s: aiohttp.ClientSession, method: str, url: str, data: str = "", key: str = KEY
) -> tuple[int, Any]:
    async with s.request(method, url, data=data, headers={**FORM, "X-MBX-APIKEY": key}) as resp:
        return resp.status, await resp.json()


def test_listen_keys_unit() -> None:
    now = [0.0]
    keys = ListenKeys(ttl_s=60, clock=lambda: now[0])
    key = keys.create("a")
    b_key = keys.create("b")
    assert keys.create("a") == key and b_key != key
    now[0] = 50
    assert keys.keepalive("a", None) == key
    now[0] = 100
    assert keys.account_of(key) == "a"  # extended to 110
    now[0] = 111
    assert keys.account_of(key) is None
    assert keys.pop_expired() == [(key, "a"), (b_key, "b")]
    assert keys.pop_expired() == []
    assert keys.create("a") != key


def test_listen_key_lifecycle() -> None:
    async def scenario() -> None:
        async with running_app() as (url, _app), aiohttp.ClientSession() as s:
            lk = f"{url}/fapi/v1/listenKey"
            status, body = await _call(s, "PUT", lk)
            assert (status, body) == (400, {"code": -1125, "msg": "This listenKey does not exist."})
            status, body = await _call(s, "POST", lk)
            key = body["listenKey"]
            assert status == 200
            assert (await _call(s, "POST", lk))[1] == {"listenKey": key}  # a repeat POST: the live key
            assert (await _call(s, "PUT", lk, f"listenKey={key}")) == (200, {"listenKey": key})
            assert (await _call(s, "PUT", lk, "listenKey=someone-else"))[1]["code"] == -1125
            other = (await _call(s, "POST", lk, key=OTHER_KEY))[1]["listenKey"]
            assert other != key
            assert (await _call(s, "DELETE", lk, f"listenKey={key}")) == (200, {})
            assert (await _call(s, "PUT", lk))[1]["code"] == -1125
            status, body = await _call(s, "POST", lk)
            assert status == 200 and body["listenKey"] != key
            async with s.get(f"{url}/private/ws?listenKey={key}") as resp:  # deleted: refused
                assert resp.status == 400 and (await resp.json())["code"] == -1125

    asyncio.run(scenario())


async def _order(
    s: aiohttp.ClientSession, url: str, client_id: str, key: str = KEY, secret: str | None = None
) -> int:
    from paper_exchange.tests.test_transport_support import OTHER_SECRET, SECRET

    order = {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "LIMIT",
        "quantity": "0.01",
        "price": "20000",
        "timeInForce": "GTC",
        "newClientOrderId": client_id,
    }
    status, body = await _call(
        s,
        "POST",
        f"{url}/fapi/v1/order",
        signed(order, secret or (SECRET if key == KEY else OTHER_SECRET)),
        key,
    )
    assert status == 200, body
    return int(body["orderId"])


async def _receive(
    ws: aiohttp.ClientWebSocketResponse[bool], count: int, timeout: float = 5.0
) -> list[dict[str, Any]]:
    events = []
    for _ in range(count):
        msg = await ws.receive(timeout=timeout)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        events.append(json.loads(msg.data))
    return events


@pytest.mark.parametrize("form", ["private", "legacy"])
def test_events_are_delivered_in_order_to_the_account_only(form: str) -> None:
    async def scenario() -> None:
        async with running_app() as (url, app), aiohttp.ClientSession() as s:
            key = (await _call(s, "POST", f"{url}/fapi/v1/listenKey"))[1]["listenKey"]
            other = (await _call(s, "POST", f"{url}/fapi/v1/listenKey", key=OTHER_KEY))[1]["listenKey"]
            ws_url = f"{url}/private/ws?listenKey={key}" if form == "private" else f"{url}/ws/{key}"
            async with s.ws_connect(ws_url) as ws, s.ws_connect(f"{url}/private/ws?listenKey={other}") as ows:
                for _ in range(50):  # the stream is registered once the handshake is done
                    if app_streams(app) == 2:
                        break
                    await asyncio.sleep(0.01)
                ids = [await _order(s, url, f"c{i}") for i in range(20)]
                await _order(s, url, "theirs", key=OTHER_KEY)
                events = await _receive(ws, 20)
                assert [e["o"]["i"] for e in events] == ids
                assert all(e["e"] == "ORDER_TRADE_UPDATE" and e["o"]["X"] == "NEW" for e in events)
                theirs = await _receive(ows, 1)
                assert theirs[0]["o"]["c"] == "theirs"
                with pytest.raises(asyncio.TimeoutError):
                    await ws.receive(timeout=0.2)  # nothing of the other account

    asyncio.run(scenario())


def app_streams(app: Any) -> int:
    from paper_exchange.app import HUB_KEY

    return int(app[HUB_KEY].stream_count())


def test_listen_key_expiry_sends_the_event_and_closes() -> None:
    transport = settings(listen_key_ttl_s=0.3, listen_key_sweep_s=0.05)

    async def scenario() -> None:
        async with running_app(FakeService(), transport) as (url, _app), aiohttp.ClientSession() as s:
            key = (await _call(s, "POST", f"{url}/fapi/v1/listenKey"))[1]["listenKey"]
            async with s.ws_connect(f"{url}/ws/{key}") as ws:
                msg = await ws.receive(timeout=3)
                event = json.loads(msg.data)
                assert event["e"] == "listenKeyExpired" and event["listenKey"] == key
                assert abs(event["E"] - time.time() * 1000) < 2000
                msg = await ws.receive(timeout=3)
                assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert (await _call(s, "PUT", f"{url}/fapi/v1/listenKey"))[1]["code"] == -1125

    asyncio.run(scenario())


def test_a_slow_client_is_disconnected_without_blocking_the_service() -> None:
    service = FakeService()
    transport = settings(ws_queue_size=4)

    async def scenario() -> None:
        async with running_app(service, transport) as (url, app), aiohttp.ClientSession() as s:
            key = (await _call(s, "POST", f"{url}/fapi/v1/listenKey"))[1]["listenKey"]
            async with s.ws_connect(f"{url}/private/ws?listenKey={key}") as ws:
                while app_streams(app) == 0:
                    await asyncio.sleep(0.01)
                started = time.perf_counter()
                for i in range(100):  # synchronous burst: the sender cannot drain in between
                    service.emit(KEY, {"e": "ACCOUNT_UPDATE", "E": i})
                assert time.perf_counter() - started < 0.1
                assert app_streams(app) == 0
                while True:
                    msg = await ws.receive(timeout=3)
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        break
                assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
                assert ws.close_code == 1008

    asyncio.run(scenario())


def test_ws_drop_and_delay_faults() -> None:
    n, p = 1000, 0.2
    faults = Faults(
        FaultConfig.model_validate(
            {"seed": 9, "ws_drop_rate": p, "ws_delay_ms": {"fixed": 150, "jitter": 50}}
        )
    )
    service = FakeService()

    async def scenario() -> None:
        async with running_app(service, faults=faults) as (url, app), aiohttp.ClientSession() as s:
            key = (await _call(s, "POST", f"{url}/fapi/v1/listenKey"))[1]["listenKey"]
            async with s.ws_connect(f"{url}/private/ws?listenKey={key}") as ws:
                while app_streams(app) == 0:
                    await asyncio.sleep(0.01)
                sent_at = time.monotonic()
                for i in range(n):
                    service.emit(KEY, {"e": "ACCOUNT_UPDATE", "E": i})
                    if i % 100 == 99:
                        await asyncio.sleep(0)
                received: list[int] = []
                first_at = 0.0
                while True:
                    try:
                        msg = await ws.receive(timeout=1.0)
                    except asyncio.TimeoutError:
                        break
                    if not received:
                        first_at = time.monotonic()
                    received.append(json.loads(msg.data)["E"])
                assert first_at - sent_at >= 0.15
                assert received == sorted(received)  # delays never reorder
                assert abs(len(received) - n * (1 - p)) <= 5 * math.sqrt(n * p * (1 - p)), len(received)

    asyncio.run(scenario())
