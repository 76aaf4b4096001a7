"""Bad input over real HTTP never gives a 500: the real engine answers with Binance's own 4xx errors.

Huge, tiny and malformed numbers in the numeric parameters of the order, algo-order, leverage and
query routes, in the query string and in a form body, and bodies far beyond any real request's size.
Orders and leverage changes must be refused with ``{"code", "msg"}``; reads may also answer empty.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from paper_exchange.tests.e2e_support import SYMBOL, candle_root, make_service, serve
from paper_exchange.tests.test_transport_support import KEY, signed

HUGE = ("12345678901234567890", "123456789012345678901234567890.5", "0.000000000000000000001", "1e400", "-5")


@pytest.fixture(scope="module")
def candles(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    return candle_root(tmp_path_factory, shared_data)


def _cases() -> list[tuple[str, str, dict[str, str]]]:
    cases: list[tuple[str, str, dict[str, str]]] = []
    limit = {"symbol": SYMBOL, "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.01"}
    limit["price"] = "40000"
    algo = {"symbol": SYMBOL, "side": "SELL", "type": "STOP_MARKET", "algoType": "CONDITIONAL"}
    algo |= {"triggerPrice": "30000", "quantity": "0.01"}
    for value in HUGE:
        for name in ("quantity", "price"):
            cases.append(("POST", "/fapi/v1/order", {**limit, name: value}))
        cases.append(("POST", "/fapi/v1/order", {**limit, "type": "MARKET", "price": "", "quantity": value}))
        for name in ("triggerPrice", "quantity"):
            cases.append(("POST", "/fapi/v1/algoOrder", {**algo, name: value}))
        cases.append(("POST", "/fapi/v1/leverage", {"symbol": SYMBOL, "leverage": value}))
        cases.append(("GET", "/fapi/v1/order", {"symbol": SYMBOL, "orderId": value}))
        cases.append(("DELETE", "/fapi/v1/order", {"symbol": SYMBOL, "orderId": value}))
        cases.append(("GET", "/fapi/v1/klines", {"symbol": SYMBOL, "interval": "5m", "limit": value}))
        cases.append(("GET", "/fapi/v1/userTrades", {"symbol": SYMBOL, "startTime": value}))
    return [(m, p, {k: v for k, v in params.items() if v != ""}) for m, p, params in cases]


async def _call(
    session: aiohttp.ClientSession, url: str, method: str, path: str, params: dict[str, str], in_body: bool
) -> tuple[int, Any]:
    query = signed(params)
    headers = {"X-MBX-APIKEY": KEY}
    if in_body:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        request = session.request(method, f"{url}{path}", data=query.encode(), headers=headers)
    else:
        request = session.request(method, f"{url}{path}?{query}", headers=headers)
    async with request as resp:
        return resp.status, await resp.json(content_type=None)


def test_huge_and_malformed_numbers_get_binance_4xx(tmp_path: Path, candles: Path) -> None:
    async def scenario() -> list[str]:
        bad: list[str] = []
        async with (
            serve(make_service(candles, tmp_path)) as url,
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        ):
            for method, path, params in _cases():
                for in_body in (False, True) if method == "POST" else (False,):
                    status, body = await _call(session, url, method, path, params, in_body)
                    if method == "GET" and status == 200:
                        continue  # a read with an out-of-range filter may answer empty
                    ok = 400 <= status < 500 and isinstance(body, dict)
                    ok = ok and isinstance(body.get("code"), int) and isinstance(body.get("msg"), str)
                    if not ok:
                        bad.append(f"{method} {path} {params} body={in_body}: {status} {body}")
        return bad

    bad = asyncio.run(scenario())
    assert bad == [], "\n".join(bad)


@pytest.mark.parametrize("size_mb", [1, 10])
def test_oversized_bodies_get_a_4xx_not_a_500(tmp_path: Path, candles: Path, size_mb: int) -> None:
    async def scenario() -> tuple[int, str]:
        body = b"quantity=" + b"9" * (size_mb * 1024 * 1024)
        headers = {"X-MBX-APIKEY": KEY, "Content-Type": "application/x-www-form-urlencoded"}
        async with (
            serve(make_service(candles, tmp_path)) as url,
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
            session.post(f"{url}/fapi/v1/order", data=body, headers=headers) as resp,
        ):
            return resp.status, await resp.text()

    status, text = asyncio.run(scenario())
    assert status == 413, (status, text[:300])
    assert '"code":-1101' in text and "too large" in text, text[:300]
