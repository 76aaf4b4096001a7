"""Fault injection: the file is validated, and each fault happens at its configured rate.

Real HTTP on 127.0.0.1 against ``FakeService``, a fake at the seam (``test_transport_support``).
Rates are checked against a binomial tolerance of 5 standard deviations (the generators are
seeded, so the outcome is also reproducible).
"""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from paper_exchange.faults import FaultConfig, Faults, load_fault_config
from paper_exchange.tests.test_transport_support import KEY, FakeService, running_app, settings, signed
from xylen.errors import ConfigError

NO_LIMITS = {"weight_limit_1m": 10**9, "orders_limit_10s": 10**9, "orders_limit_1m": 10**9}


def _within(count: int, n: int, p: float) -> bool:
    return abs(count - n * p) <= 5 * math.sqrt(n * p * (1 - p))


def test_fault_file_is_validated(tmp_path: Path) -> None:
    good = tmp_path / "faults.yaml"
    good.write_text(
        "seed: 3\nlatency_ms: 25\nerror_rate: {rate: 0.1, paths: ['/fapi/v1/order']}\n"
        "unknown_error_rate: 0.05\nws_drop_rate: {rate: 0.01, events: [ORDER_TRADE_UPDATE]}\n"
        "ws_delay_ms: {fixed: 10, jitter: 5}\nclock_skew_ms: -1500\n"
    )
    config = load_fault_config(good)
    assert config.latency_ms is not None and config.latency_ms.fixed == 25
    assert config.error_rate is not None and config.error_rate.paths == ("/fapi/v1/order",)
    assert config.clock_skew_ms is not None and config.clock_skew_ms.ms == -1500
    for text, key in [
        ("error_rate: 1.5\n", "error_rate.rate"),
        ("latency: 5\n", "latency"),
        ("latency_ms: {fixed: -1}\n", "latency_ms.fixed"),
        ("error_rate: {rate: 0.1, statuses: [502]}\n", "error_rate.statuses.0"),
        ("ws_drop_rate: {rate: 0.1, pathz: []}\n", "ws_drop_rate.pathz"),
        ("- a\n- b\n", "faults"),
        ("error_rate: [\n", "faults"),
    ]:
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(ConfigError) as err:
            load_fault_config(bad)
        assert err.value.key == key, (text, err.value)
        assert str(bad) in str(err.value)
    with pytest.raises(ConfigError):
        load_fault_config(tmp_path / "missing.yaml")


def test_latency_draws_and_filters() -> None:
    faults = Faults(
        FaultConfig.model_validate({"latency_ms": {"fixed": 30, "jitter": 20, "paths": ["/fapi/*"]}})
    )
    draws = [faults.latency_s("/fapi/v1/order") for _ in range(2000)]
    assert min(draws) >= 0.030 and max(draws) <= 0.050
    assert abs(sum(draws) / len(draws) - 0.040) < 0.001
    assert faults.latency_s("/api/v3/ping") == 0.0
    again = Faults(
        FaultConfig.model_validate({"latency_ms": {"fixed": 30, "jitter": 20, "paths": ["/fapi/*"]}})
    )
    assert [again.latency_s("/fapi/v1/order") for _ in range(2000)] == draws  # seeded


async def _send(
    session: aiohttp.ClientSession, method: str, url: str, data: str | None = None
) -> tuple[int, Any]:
    headers = {"X-MBX-APIKEY": KEY}
    if data is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    async with session.request(method, url, data=data, headers=headers) as resp:
        return resp.status, await resp.json()


def test_latency_is_applied_over_http() -> None:
    faults = Faults(FaultConfig.model_validate({"latency_ms": {"fixed": 40, "paths": ["/fapi/v1/ping"]}}))

    async def scenario() -> None:
        async with running_app(faults=faults) as (url, _app), aiohttp.ClientSession() as s:
            started = time.perf_counter()
            for _ in range(5):
                await _send(s, "GET", f"{url}/fapi/v1/ping")
            assert time.perf_counter() - started >= 0.2
            started = time.perf_counter()
            await _send(s, "GET", f"{url}/fapi/v1/time")
            assert time.perf_counter() - started < 0.04

    asyncio.run(scenario())


def test_error_rate_fails_requests_without_executing_them() -> None:
    n, p = 1000, 0.2
    faults = Faults(
        FaultConfig.model_validate({"seed": 11, "error_rate": {"rate": p, "paths": ["/fapi/v1/ping"]}})
    )
    service = FakeService()
    replies: list[tuple[int, Any]] = []

    async def scenario() -> None:
        transport = settings(**NO_LIMITS)
        async with (
            running_app(service, transport, faults=faults) as (url, _app),
            aiohttp.ClientSession() as s,
        ):
            for _ in range(n):
                replies.append(await _send(s, "GET", f"{url}/fapi/v1/ping"))
            for _ in range(50):
                status, _ = await _send(s, "GET", f"{url}/fapi/v1/time")
                assert status == 200  # outside the path filter

    asyncio.run(scenario())
    failed = [r for r in replies if r[0] >= 500]
    assert _within(len(failed), n, p), len(failed)
    assert {status for status, _ in failed} == {500, 503}
    bodies = {status: body for status, body in failed}
    assert bodies[503] == {"code": -1001, "msg": "Service Unavailable."}
    assert bodies[500] == {
        "code": -1001,
        "msg": "Internal error; unable to process your request. Please try again.",
    }
    executed = sum(1 for name, _, _ in service.calls if name == "ping")
    assert executed == n - len(failed)


def test_unknown_error_rate_executes_the_order_and_answers_503() -> None:
    n, p = 1000, 0.2
    faults = Faults(FaultConfig.model_validate({"seed": 5, "unknown_error_rate": p}))
    service = FakeService()
    unknown: list[tuple[str, dict[str, Any]]] = []

    async def scenario() -> None:
        transport = settings(**NO_LIMITS)
        async with (
            running_app(service, transport, faults=faults) as (url, _app),
            aiohttp.ClientSession() as s,
        ):
            for i in range(n):
                order = {
                    "symbol": "BTCUSDT",
                    "side": "BUY",
                    "type": "LIMIT",
                    "quantity": "0.01",
                    "price": "20000",
                    "timeInForce": "GTC",
                    "newClientOrderId": f"c{i}",
                }
                status, body = await _send(s, "POST", f"{url}/fapi/v1/order", signed(order))
                if status != 200:
                    assert status == 503
                    unknown.append((f"c{i}", body))
            # The client's recovery: look the order up by its clientOrderId.
            client_id, body = unknown[0]
            assert set(body) == {"timestamp", "path", "msg"}
            assert body["path"] == "/fapi/v1/order"
            assert body["msg"] == "Unknown error, please check your request or try again later."
            query = signed({"symbol": "BTCUSDT", "origClientOrderId": client_id})
            status, found = await _send(s, "GET", f"{url}/fapi/v1/order?{query}")
            assert status == 200 and found["clientOrderId"] == client_id
            for _ in range(100):  # non-order TRADE endpoints are not affected
                status, _ = await _send(
                    s, "POST", f"{url}/fapi/v1/leverage", signed({"symbol": "BTCUSDT", "leverage": "5"})
                )
                assert status == 200

    asyncio.run(scenario())
    assert _within(len(unknown), n, p), len(unknown)
    assert len(service.orders) == n  # every order was executed


def test_clock_skew_moves_server_time_and_the_timestamp_check() -> None:
    faults = Faults(FaultConfig.model_validate({"clock_skew_ms": 20_000}))

    async def scenario() -> None:
        async with running_app(faults=faults) as (url, _app), aiohttp.ClientSession() as s:
            status, body = await _send(s, "GET", f"{url}/fapi/v1/time")
            assert status == 200 and abs(body["serverTime"] - (time.time() * 1000 + 20_000)) < 2000
            status, body = await _send(s, "GET", f"{url}/api/v3/time")
            assert abs(body["serverTime"] - (time.time() * 1000 + 20_000)) < 2000
            status, body = await _send(s, "GET", f"{url}/fapi/v2/balance?{signed({})}")
            assert (status, body["code"]) == (400, -1021)
            skewed = int(time.time() * 1000) + 20_000
            status, body = await _send(s, "GET", f"{url}/fapi/v2/balance?{signed({}, ts=skewed)}")
            assert status == 200, body

    asyncio.run(scenario())


def test_ws_fault_draws() -> None:
    n, p = 2000, 0.2
    faults = Faults(
        FaultConfig.model_validate(
            {
                "ws_drop_rate": {"rate": p, "events": ["ORDER_TRADE_UPDATE"]},
                "ws_delay_ms": {"fixed": 5, "jitter": 10},
            }
        )
    )
    dropped = sum(faults.drop_event("/private/ws", "ORDER_TRADE_UPDATE") for _ in range(n))
    assert _within(dropped, n, p)
    assert not any(faults.drop_event("/private/ws", "ACCOUNT_UPDATE") for _ in range(100))
    delays = [faults.event_delay_s("/ws/k", "X") for _ in range(n)]
    assert min(delays) >= 0.005 and max(delays) <= 0.015
