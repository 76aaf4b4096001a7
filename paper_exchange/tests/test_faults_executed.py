"""The faults whose request IS executed: a 2xx with an unreadable body, a fill after a cancel.

Against the REAL engine (real BTCUSDT candles) over real HTTP and the user-data WebSocket on
127.0.0.1, with plain signed requests: what a client sees, and what the exchange then shows.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from paper_exchange.faults import FaultConfig, Faults, RateSpec, load_fault_config
from paper_exchange.tests.e2e_support import SYMBOL, candle_root, make_service, serve
from paper_exchange.tests.test_transport_support import KEY, signed
from xylen.errors import ConfigError


@pytest.fixture(scope="module")
def candles(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    return candle_root(tmp_path_factory, shared_data)


def _faults(**config: Any) -> Faults:
    return Faults(FaultConfig.model_validate(config))


async def _call(session: aiohttp.ClientSession, method: str, url: str, params: dict[str, Any]) -> Any:
    headers = {"X-MBX-APIKEY": KEY}
    query = signed(params)
    if method == "GET":
        async with session.get(f"{url}?{query}", headers=headers) as reply:
            assert reply.status == 200, await reply.text()
            return await reply.json()
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    async with session.request(method, url, data=query, headers=headers) as reply:
        return reply.status, await reply.read()


def test_an_unreadable_reply_is_a_200_whose_order_exists(candles: Path, tmp_path: Path) -> None:
    service = make_service(candles, tmp_path)
    faults = _faults(unreadable_reply_rate=1.0)

    async def scenario() -> None:
        async with serve(service, faults=faults) as url, aiohttp.ClientSession() as s:
            order = {"symbol": SYMBOL, "side": "BUY", "type": "MARKET", "quantity": "0.010",
                     "newClientOrderId": "unreadable-1", "newOrderRespType": "RESULT"}  # fmt: skip
            status, body = await _call(s, "POST", f"{url}/fapi/v1/order", order)
            assert status == 200 and body
            with pytest.raises(orjson.JSONDecodeError):
                orjson.loads(body)
            assert body.startswith(b'{"orderId":')  # the real reply, cut short
            found = await _call(
                s, "GET", f"{url}/fapi/v1/order", {"symbol": SYMBOL, "origClientOrderId": "unreadable-1"}
            )
            assert found["status"] == "FILLED" and found["executedQty"] == "0.010"
            leverage = {"symbol": SYMBOL, "leverage": "5"}  # not a placement: untouched
            status, body = await _call(s, "POST", f"{url}/fapi/v1/leverage", leverage)
            assert status == 200 and json.loads(body)["leverage"] == 5

    asyncio.run(scenario())


def test_a_cancel_acknowledged_canceled_while_the_order_fills(candles: Path, tmp_path: Path) -> None:
    service = make_service(candles, tmp_path)
    faults = _faults(fill_after_cancel_rate=1.0)

    async def scenario() -> None:
        async with serve(service, faults=faults) as url, aiohttp.ClientSession() as s:
            status, body = await _call(s, "POST", f"{url}/fapi/v1/listenKey", {})
            key = json.loads(body)["listenKey"]
            async with s.ws_connect(f"{url.replace('http', 'ws')}/private/ws?listenKey={key}") as ws:
                resting = {"symbol": SYMBOL, "side": "BUY", "type": "LIMIT", "quantity": "0.010",
                           "price": "40000", "timeInForce": "GTC", "newClientOrderId": "ghost-1"}  # fmt: skip
                status, body = await _call(s, "POST", f"{url}/fapi/v1/order", resting)
                assert status == 200 and json.loads(body)["status"] == "NEW"
                ref = {"symbol": SYMBOL, "origClientOrderId": "ghost-1"}
                status, body = await _call(s, "DELETE", f"{url}/fapi/v1/order", ref)
                reply = json.loads(body)
                assert status == 200 and (reply["status"], reply["executedQty"]) == ("CANCELED", "0.000")
                found = await _call(s, "GET", f"{url}/fapi/v1/order", ref)
                assert (found["status"], found["executedQty"], found["avgPrice"]) == (
                    "FILLED",
                    "0.010",
                    "40000.00",
                )
                positions = await _call(s, "GET", f"{url}/fapi/v3/positionRisk", {"symbol": SYMBOL})
                assert [p["positionAmt"] for p in positions] == ["0.010"]
                reports: list[dict[str, Any]] = []
                while not any(r.get("X") == "FILLED" for r in reports):
                    msg = json.loads((await asyncio.wait_for(ws.receive(), 5.0)).data)
                    if msg["e"] == "ORDER_TRADE_UPDATE" and msg["o"]["c"] == "ghost-1":
                        reports.append(msg["o"])
                assert [(r["x"], r["X"]) for r in reports] == [("NEW", "NEW"), ("TRADE", "FILLED")]
                # a reduce-only order fills no more than the position it reduces
                reduce = {"symbol": SYMBOL, "side": "SELL", "type": "LIMIT", "quantity": "0.010",
                          "price": "60000", "timeInForce": "GTC", "reduceOnly": "true",
                          "newClientOrderId": "ghost-2"}  # fmt: skip
                status, body = await _call(s, "POST", f"{url}/fapi/v1/order", reduce)
                assert status == 200, body
                ref = {"symbol": SYMBOL, "origClientOrderId": "ghost-2"}
                status, body = await _call(s, "DELETE", f"{url}/fapi/v1/order", ref)
                assert json.loads(body)["status"] == "CANCELED"
                found = await _call(s, "GET", f"{url}/fapi/v1/order", ref)
                assert (found["status"], found["executedQty"]) == ("FILLED", "0.010")
                positions = await _call(s, "GET", f"{url}/fapi/v3/positionRisk", {"symbol": SYMBOL})
                assert all(p["positionAmt"] in ("0", "0.000") for p in positions), positions

    asyncio.run(scenario())


def test_the_two_faults_are_read_from_the_fault_file(tmp_path: Path) -> None:
    path = tmp_path / "faults.yaml"
    path.write_text("unreadable_reply_rate: 0.1\nfill_after_cancel_rate: {rate: 0.5, seed: 4}\n")
    config = load_fault_config(path)
    assert config.unreadable_reply_rate is not None and config.unreadable_reply_rate.rate == 0.1
    assert config.fill_after_cancel_rate is not None and config.fill_after_cancel_rate.seed == 4
    path.write_text("fill_after_cancel_rate: 1.5\n")
    with pytest.raises(ConfigError) as err:
        load_fault_config(path)
    assert err.value.key == "fill_after_cancel_rate.rate"
    faults = Faults(
        FaultConfig(unreadable_reply_rate=RateSpec(rate=1.0), fill_after_cancel_rate=RateSpec(rate=1.0))
    )
    assert faults.unreadable_reply("/fapi/v1/order", "POST") and faults.unreadable_reply(
        "/fapi/v1/algoOrder", "POST"
    )
    assert not faults.unreadable_reply("/fapi/v1/order", "DELETE")  # a cancel is not a placement
    assert not faults.unreadable_reply("/fapi/v1/leverage", "POST")
    assert faults.fill_after_cancel("/fapi/v1/order", "DELETE")
    assert not faults.fill_after_cancel("/fapi/v1/algoOrder", "DELETE")


def test_paths_narrow_the_two_faults_and_never_turn_them_on_other_requests() -> None:
    """With ``paths`` on the order route, a placement is never sent to the losing-cancel path and a
    cancel never gets a truncated placement reply: each fault still needs its own method and route."""
    faults = _faults(
        unreadable_reply_rate={"rate": 1.0, "paths": ["/fapi/v1/order"]},
        fill_after_cancel_rate={"rate": 1.0, "paths": ["/fapi/v1/order"]},
    )
    assert faults.unreadable_reply("/fapi/v1/order", "POST")
    assert not faults.unreadable_reply("/fapi/v1/order", "DELETE")
    assert faults.fill_after_cancel("/fapi/v1/order", "DELETE")
    assert not faults.fill_after_cancel("/fapi/v1/order", "POST")
    assert not faults.fill_after_cancel("/fapi/v1/order", "GET")
    narrowed = _faults(fill_after_cancel_rate={"rate": 1.0, "paths": ["/fapi/v1/algoOrder"]})
    assert not narrowed.fill_after_cancel("/fapi/v1/order", "DELETE")
