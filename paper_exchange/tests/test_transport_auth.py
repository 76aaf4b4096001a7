"""Authentication of the transport: API key, signature over raw bytes, timestamp and recvWindow.

Runs real HTTP on 127.0.0.1 against ``FakeService``, a fake at the seam (see
``test_transport_support``): these tests are about the transport, not the engine.
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from typing import Any

import aiohttp
import pytest

from paper_exchange.auth import Authenticator, parse_params, sign, split_signature
from paper_exchange.protocol import BinanceError
from paper_exchange.tests.test_transport_support import (
    KEY,
    OTHER_KEY,
    OTHER_SECRET,
    SECRET,
    FakeService,
    running_app,
    signed,
)

VECTOR_SECRET = "2b5eb11e18796d12d88f13dc27dbbd02c2cc51ff7059765ed9821957d82bb4d9"
VECTOR_PAYLOAD = (
    "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=9000&timeInForce=GTC"
    "&recvWindow=5000&timestamp=1591702613943"
)
VECTOR_SIGNATURE = "3c661234138461fcc7a7d8746c6558c9842d4e10870d2ecbedf7777cad694af9"
MIXED_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
MIXED_SIGNATURE = "0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77"
MANDATORY = "Mandatory parameter '{}' was not sent, was empty/null, or malformed."
ILLEGAL_TIMESTAMP = "Illegal characters found in parameter 'timestamp'; legal range is '^[0-9]{1,20}$'."
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def test_reference_vector() -> None:
    assert sign(VECTOR_SECRET, VECTOR_PAYLOAD) == VECTOR_SIGNATURE
    auth = Authenticator({"k": VECTOR_SECRET})
    query = f"{VECTOR_PAYLOAD}&signature={VECTOR_SIGNATURE}"
    params = parse_params(query, "")
    auth.verify("k", query.encode(), b"", params, server_ms=1591702613943 + 10)
    # Binance's "mixed query string and request body" example (spot docs, recomputed): the MAC is
    # over rawQuery + rawBody joined with no "&".
    mixed = Authenticator({"k": MIXED_SECRET})
    head = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC"
    body = f"quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559&signature={MIXED_SIGNATURE}"
    mixed.verify("k", head.encode(), body.encode(), parse_params(head, body), server_ms=1499827319559 + 10)
    with pytest.raises(BinanceError) as err:
        auth.verify("k", query.replace("9000", "9001").encode(), b"", params, server_ms=1591702613943 + 10)
    assert err.value.code == -1022


def test_split_signature_cuts_exactly_the_signature_parameter() -> None:
    assert split_signature(b"a=1&signature=ff", b"") == (b"a=1", b"ff")
    assert split_signature(b"a=1", b"b=2&signature=ee") == (b"a=1b=2", b"ee")
    assert split_signature(b"signature=ab", b"") == (b"", b"ab")
    assert split_signature(b"a=1", b"b=2") == (b"a=1b=2", None)
    assert split_signature(b"xsignature=1&a=2", b"") == (b"xsignature=1&a=2", None)


def test_parse_params_query_wins_and_duplicates_are_refused() -> None:
    assert parse_params("a=1&b=x%2By+z", "a=2&c=3") == {"a": "1", "b": "x+y z", "c": "3"}
    with pytest.raises(BinanceError) as err:
        parse_params("a=1&a=2", "")
    assert err.value.code == -1101


async def _call(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    key: str | None = KEY,
    data: str | None = None,
) -> tuple[int, Any, Any]:
    headers = dict(FORM) if data is not None else {}
    if key is not None:
        headers["X-MBX-APIKEY"] = key
    async with session.request(method, url, data=data, headers=headers) as resp:
        return resp.status, await resp.json(), resp.headers


def _run(scenario: Any) -> None:
    asyncio.run(scenario())


def test_signed_requests_in_every_client_shape_are_accepted() -> None:
    service = FakeService()

    async def scenario() -> None:
        async with running_app(service) as (url, _app), aiohttp.ClientSession() as s:
            # GET, signed query (both clients).
            status, body, headers = await _call(s, "GET", f"{url}/fapi/v3/account?{signed({})}")
            assert status == 200 and body["totalWalletBalance"] == "10000"
            assert headers["Content-Type"].startswith("application/json")
            # POST as python-binance sends it: alphabetical params, signature last, form body.
            params = {
                "newClientOrderId": "x-Cb7ytekJ0123456789abcdef012345",
                "price": "20000",
                "quantity": "0.010",
                "recvWindow": "10000",
                "side": "BUY",
                "symbol": "BTCUSDT",
                "timeInForce": "GTC",
                "timestamp": str(int(time.time() * 1000)),
                "type": "LIMIT",
            }
            query = urllib.parse.urlencode(params)
            status, order, _ = await _call(
                s, "POST", f"{url}/fapi/v1/order", data=f"{query}&signature={sign(SECRET, query)}"
            )
            assert status == 200, order
            # POST as ccxt sends it: timestamp first, insertion order, form body.
            ccxt_body = signed(
                {
                    "timestamp": int(time.time() * 1000),
                    "symbol": "BTCUSDT",
                    "side": "SELL",
                    "type": "LIMIT",
                    "quantity": "0.010",
                    "price": "40000",
                    "timeInForce": "GTC",
                    "newClientOrderId": "x-cvBPrNm9:a/b.c",
                    "recvWindow": "10000",
                }
            )
            status, order2, _ = await _call(s, "POST", f"{url}/fapi/v1/order", data=ccxt_body)
            assert status == 200, order2
            assert order2["clientOrderId"] == "x-cvBPrNm9:a/b.c"  # percent-encoded on the wire
            # DELETE as ccxt sends it: everything in the query string.
            cancel = signed({"symbol": "BTCUSDT", "orderId": order2["orderId"]})
            status, body, _ = await _call(s, "DELETE", f"{url}/fapi/v1/order?{cancel}")
            assert status == 200 and body["status"] == "CANCELED"
            # DELETE as python-binance sends it: form body.
            cancel = signed({"orderId": order["orderId"], "symbol": "BTCUSDT"})
            status, body, _ = await _call(s, "DELETE", f"{url}/fapi/v1/order", data=cancel)
            assert status == 200 and body["status"] == "CANCELED"
            # Mixed: part in the query, part (with the signature) in the body; the MAC is over
            # rawQuery + rawBody with no separator.  The query wins for a name in both.
            ts = int(time.time() * 1000)
            q = "symbol=BTCUSDT&side=BUY"
            b = f"symbol=ETHUSDT&type=MARKET&quantity=0.002&timestamp={ts}"
            status, body, _ = await _call(
                s, "POST", f"{url}/fapi/v1/order?{q}", data=f"{b}&signature={sign(SECRET, q + b)}"
            )
            assert status == 200, body
            assert body["symbol"] == "BTCUSDT"
            # A second account signs with its own secret and is its own account.
            status, _, _ = await _call(
                s, "GET", f"{url}/fapi/v1/openOrders?{signed({}, OTHER_SECRET)}", key=OTHER_KEY
            )
            assert status == 200

    _run(scenario)
    accounts = {(name, account) for name, account, _ in service.calls}
    assert ("new_order", KEY) in accounts and ("open_orders", OTHER_KEY) in accounts


@pytest.mark.parametrize(
    ("case", "status", "code", "msg"),
    [
        ("no-key", 401, -2014, "API-key format invalid."),
        ("unknown-key", 401, -2015, "Invalid API-key, IP, or permissions for action."),
        ("tampered", 400, -1022, "Signature for this request is not valid."),
        ("wrong-secret", 400, -1022, "Signature for this request is not valid."),
        ("other-account-secret", 400, -1022, "Signature for this request is not valid."),
        ("old", 400, -1021, "Timestamp for this request is outside of the recvWindow."),
        ("ahead", 400, -1021, "Timestamp for this request was 1000ms ahead of the server's time."),
        ("recv-window-too-big", 400, -1131, "recvWindow must be less than 60000."),
        ("no-timestamp", 400, -1102, MANDATORY.format("timestamp")),
        ("bad-timestamp", 400, -1100, ILLEGAL_TIMESTAMP),
        ("no-signature", 400, -1102, MANDATORY.format("signature")),
    ],
)
def test_refusals(case: str, status: int, code: int, msg: str) -> None:
    now = int(time.time() * 1000)
    key: str | None = KEY
    query = signed({"symbol": "BTCUSDT"})
    if case == "no-key":
        key = None
    elif case == "unknown-key":
        key = "nobody"
    elif case == "tampered":
        query = query.replace("BTCUSDT", "ETHUSDT")
    elif case == "wrong-secret":
        query = signed({"symbol": "BTCUSDT"}, "not-the-secret")
    elif case == "other-account-secret":
        query = signed({"symbol": "BTCUSDT"}, OTHER_SECRET)
    elif case == "old":
        query = signed({"symbol": "BTCUSDT"}, ts=now - 6000)
    elif case == "ahead":
        query = signed({"symbol": "BTCUSDT"}, ts=now + 5000)
    elif case == "recv-window-too-big":
        query = signed({"symbol": "BTCUSDT", "recvWindow": 60001})
    elif case == "no-timestamp":
        raw = "symbol=BTCUSDT"
        query = f"{raw}&signature={sign(SECRET, raw)}"
    elif case == "bad-timestamp":
        query = signed({"symbol": "BTCUSDT", "timestamp": "12a"})
    elif case == "no-signature":
        query = f"symbol=BTCUSDT&timestamp={now}"
    service = FakeService()

    async def scenario() -> None:
        async with running_app(service) as (url, _app), aiohttp.ClientSession() as s:
            got_status, body, headers = await _call(s, "GET", f"{url}/fapi/v1/openOrders?{query}", key=key)
            assert (got_status, body) == (status, {"code": code, "msg": msg})
            assert headers["X-MBX-USED-WEIGHT-1M"] == "1"

    _run(scenario)
    assert not service.calls  # refused requests never reach the service


def test_recv_window_widens_the_accepted_age() -> None:
    async def scenario() -> None:
        async with running_app() as (url, _app), aiohttp.ClientSession() as s:
            old = int(time.time() * 1000) - 8000
            status, _, _ = await _call(
                s, "GET", f"{url}/fapi/v2/balance?{signed({'recvWindow': 10000}, ts=old)}"
            )
            assert status == 200
            status, body, _ = await _call(s, "GET", f"{url}/fapi/v2/balance?{signed({}, ts=old)}")
            assert (status, body["code"]) == (400, -1021)

    _run(scenario)


def test_listen_key_and_public_endpoints_need_no_signature() -> None:
    async def scenario() -> None:
        async with running_app() as (url, _app), aiohttp.ClientSession() as s:
            status, body, _ = await _call(s, "POST", f"{url}/fapi/v1/listenKey", data="")
            assert status == 200 and len(body["listenKey"]) == 64
            status, body, _ = await _call(s, "POST", f"{url}/fapi/v1/listenKey", key=None, data="")
            assert (status, body["code"]) == (401, -2014)
            status, body, _ = await _call(s, "GET", f"{url}/fapi/v1/time", key=None)
            assert status == 200 and abs(body["serverTime"] - time.time() * 1000) < 5000

    _run(scenario)
