"""Routes, replies and robustness of the transport: 404/405, service errors, 500s, garbage input.

Real HTTP on 127.0.0.1 against ``FakeService``, a fake at the seam (``test_transport_support``).
"""

from __future__ import annotations

import asyncio
import http.client
import inspect
import logging
import time
import urllib.parse
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paper_exchange.auth import sign
from paper_exchange.protocol import ExchangeService
from paper_exchange.routes import LISTEN_KEY_TARGETS, ROUTES, Security, route_index
from paper_exchange.tests.test_transport_support import (
    KEY,
    SECRET,
    FakeService,
    ServerThread,
    running_app,
    signed,
)
from paper_exchange.tests.test_transport_support import settings as transport_settings


def test_route_table_covers_every_service_method_and_the_reference() -> None:
    route_index()  # no duplicates
    targets = {r.target for r in ROUTES} - LISTEN_KEY_TARGETS
    protocol_methods = {
        name
        for name, _ in inspect.getmembers(ExchangeService, inspect.isfunction)
        if not name.startswith("_")
    } - {"advance", "subscribe", "close"}
    assert targets == protocol_methods
    paths = {(r.method, r.path) for r in ROUTES}
    for expected in [
        ("GET", "/api/v3/ping"),
        ("GET", "/api/v3/time"),
        ("GET", "/fapi/v2/ticker/price"),
        ("GET", "/fapi/v3/balance"),
        ("GET", "/fapi/v2/account"),
        ("GET", "/fapi/v3/positionRisk"),
        ("GET", "/fapi/v1/algoOpenOrders"),
        ("GET", "/fapi/v1/openAlgoOrders"),
        ("PUT", "/fapi/v1/listenKey"),
        ("DELETE", "/fapi/v1/allOpenOrders"),
    ]:
        assert expected in paths
    orders = {r.path for r in ROUTES if r.is_order}
    assert orders == {"/fapi/v1/order", "/fapi/v1/algoOrder"}
    assert all(r.security is Security.TRADE for r in ROUTES if r.is_order)


async def _get(session: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[int, Any, Any]:
    async with session.request(kw.pop("method", "GET"), url, **kw) as resp:
        return resp.status, await resp.json(content_type=None), resp.headers


def test_unknown_paths_wrong_methods_and_service_errors() -> None:
    async def scenario() -> None:
        async with running_app() as (url, _app), aiohttp.ClientSession() as s:
            status, body, headers = await _get(s, f"{url}/fapi/v1/nothing")
            assert status == 404
            assert body == {"code": -5000, "msg": "Path /fapi/v1/nothing, Method GET is invalid"}
            assert headers["Content-Type"].startswith("application/json")
            assert "X-MBX-USED-WEIGHT-1M" in headers
            status, body, headers = await _get(s, f"{url}/fapi/v1/time", method="POST")
            assert status == 405 and body["code"] == -5000 and headers["Allow"] == "GET"
            status, body, _ = await _get(s, f"{url}/fapi/v1/listenKey", method="GET")
            assert status == 405
            # A service ApiError keeps its status and body.
            status, body, _ = await _get(s, f"{url}/fapi/v1/klines?symbol=NOPE&interval=5m")
            assert (status, body) == (400, {"code": -1121, "msg": "Invalid symbol."})
            status, body, _ = await _get(s, f"{url}/fapi/v1/klines?interval=5m")
            assert status == 400 and body["code"] == -1102
            # Duplicate names in one part -> -1101.
            status, body, _ = await _get(s, f"{url}/fapi/v1/klines?symbol=BTCUSDT&symbol=BTCUSDT&interval=5m")
            assert (status, body["code"]) == (400, -1101)
            status, body, _ = await _get(s, f"{url}/fapi/v1/ping")
            assert (status, body) == (200, {})

    asyncio.run(scenario())


def test_unexpected_exception_is_a_logged_500(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with running_app() as (url, _app), aiohttp.ClientSession() as s:
            status, body, headers = await _get(s, f"{url}/fapi/v1/ping?boom=1")
            assert status == 500
            assert body == {"code": -1000, "msg": "An unknown error occured while processing the request."}
            assert "X-MBX-USED-WEIGHT-1M" in headers

    with caplog.at_level(logging.ERROR, logger="paper_exchange.app"):
        asyncio.run(scenario())
    assert any("unexpected error" in r.getMessage() for r in caplog.records)


PATHS = [r.path for r in ROUTES] + ["/fapi/v1/x", "/", "/fapi", "/ws/zz", "/private/ws"]
RAW = st.text(alphabet=st.sampled_from("abcdefXYZ0129=&%+;/ ?#.-_~\u00e9\u20ac\x00"), max_size=80)
PAIRS = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "symbol",
                "side",
                "type",
                "quantity",
                "price",
                "timeInForce",
                "orderId",
                "limit",
                "interval",
                "leverage",
                "timestamp",
                "recvWindow",
                "signature",
                "listenKey",
                "x",
            ]
        ),
        st.one_of(st.text(max_size=12), st.sampled_from(["BTCUSDT", "BUY", "LIMIT", "1", "-1", "1e400"])),
    ),
    max_size=8,
)


def _request(conn: http.client.HTTPConnection, method: str, target: str, body: bytes, key: str | None) -> int:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if key is not None:
        headers["X-MBX-APIKEY"] = key
    conn.request(method, target, body=body or None, headers=headers)
    resp = conn.getresponse()
    resp.read()
    return resp.status


@pytest.fixture(scope="module")
def fuzz_server() -> Any:
    service = FakeService()
    with ServerThread(
        service, transport_settings(weight_limit_1m=10**9, orders_limit_10s=10**9, orders_limit_1m=10**9)
    ) as server:
        yield server


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
    path=st.sampled_from(PATHS),
    raw=RAW,
    pairs=PAIRS,
    shape=st.sampled_from(["raw-query", "raw-body", "signed-query", "signed-body", "bad-signed"]),
    key=st.sampled_from([None, KEY, "bogus", ""]),
)
def test_garbage_never_gives_a_5xx(
    fuzz_server: ServerThread,
    method: str,
    path: str,
    raw: str,
    pairs: list[tuple[str, str]],
    shape: str,
    key: str | None,
) -> None:
    query, body = "", ""
    if shape == "raw-query":
        query = urllib.parse.quote(raw, safe="=&%+;/?")
    elif shape == "raw-body":
        body = raw
    else:
        encoded = urllib.parse.urlencode([*pairs, ("timestamp", str(int(time.time() * 1000)))])
        signature = sign(SECRET, encoded) if shape != "bad-signed" else "00" * 32
        if shape == "signed-query":
            query = f"{encoded}&signature={signature}"
        else:
            body = f"{encoded}&signature={signature}"
    target = f"{path}?{query}" if query else path
    conn = http.client.HTTPConnection("127.0.0.1", fuzz_server.port, timeout=10)
    try:
        status = _request(conn, method, target, body.encode("utf-8", "surrogatepass"), key)
    finally:
        conn.close()
    assert status < 500, (method, target, body)


def test_params_reach_the_service_exactly_as_strings() -> None:
    service = FakeService()

    async def scenario() -> None:
        async with running_app(service) as (url, _app), aiohttp.ClientSession() as s:
            query = signed({"symbol": "BTCUSDT", "leverage": "020"})
            headers = {"X-MBX-APIKEY": KEY, "Content-Type": "application/x-www-form-urlencoded"}
            status, body, _ = await _get(
                s, f"{url}/fapi/v1/leverage", method="POST", data=query, headers=headers
            )
            assert status == 200 and body["leverage"] == 20

    asyncio.run(scenario())
    name, account, params = service.calls[-1]
    assert (name, account) == ("set_leverage", KEY)
    assert params["leverage"] == "020" and "signature" in params and params["timestamp"].isdigit()
