"""Degradation on a real server process: low memory (503 on /retrain, /predict serves), queue depth
and rate limit (429)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from model_server.tests.server_support import (
    AUTH,
    ServerProcess,
    feature_rows,
    predict_body,
    start_server,
    train_booster,
    write_model_dir,
)
from xylen.features import FEATURE_VERSION


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, btc_5m_path: Path) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("degraded")
    write_model_dir(home / "models" / "v1", train_booster(btc_5m_path, rounds=30), "v1")
    env = {
        "MIN_FREE_MEMORY_MB": str(10**9),  # more than any host has: degraded from the start
        "MAX_QUEUE_DEPTH": "1",
        "RATE_LIMIT_PER_SECOND": "5",
        "RATE_LIMIT_BURST": "30",
    }
    proc = start_server(home, env)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def row(btc_5m_path: Path) -> dict[str, float]:
    return feature_rows(btc_5m_path, 1)[0]


async def post(
    url: str, body: object, local_addr: tuple[str, int] | None = None
) -> tuple[int, dict[str, str], str]:
    connector = aiohttp.TCPConnector(local_addr=local_addr) if local_addr else None
    timeout = aiohttp.ClientTimeout(total=10)
    async with (
        aiohttp.ClientSession(headers=AUTH, timeout=timeout, connector=connector) as s,
        s.post(url, json=body) as resp,
    ):
        return resp.status, dict(resp.headers), await resp.text()


def test_low_memory_degrades_retrain_but_predict_serves(server: ServerProcess, row: dict[str, float]) -> None:
    async def scenario() -> None:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s,
            s.get(f"{server.url}/health") as r,
        ):
            assert (await r.json())["status"] == "degraded"
        status, _, text = await post(f"{server.url}/predict", predict_body(row))
        assert status == 200, text
        outcome = {"request_id": "o1", "timestamp": 1, "features": row, "label": 1}
        status, headers, text = await post(
            f"{server.url}/retrain", {"outcomes": [outcome], "feature_version": FEATURE_VERSION}
        )
        assert status == 503 and "retraining paused" in text and headers.get("Retry-After")

    asyncio.run(scenario())
    assert not list((server.home / "feedback").glob("part-*.parquet"))


def test_queue_depth_gives_429(server: ServerProcess, row: dict[str, float]) -> None:
    async def scenario() -> None:
        # a slow client: headers and half a body, so its request stays in flight
        _reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        head = (
            f"POST /predict HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTH['Authorization']}\r\n"
            "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
        )
        writer.write(head.encode() + b'{"request_id": ')
        await writer.drain()
        await asyncio.sleep(0.2)
        status, headers, text = await post(f"{server.url}/predict", predict_body(row))
        assert status == 429 and "MAX_QUEUE_DEPTH" in text and headers.get("Retry-After") == "1"
        writer.close()
        await writer.wait_closed()
        await asyncio.sleep(0.2)
        status, _, _ = await post(f"{server.url}/predict", predict_body(row))
        assert status == 200

    asyncio.run(scenario())


def test_rate_limit_per_client_gives_429(server: ServerProcess, row: dict[str, float]) -> None:
    try:  # another loopback address, so this client has a bucket of its own
        with socket.create_connection(("127.0.0.1", server.port), source_address=("127.0.0.2", 0)):
            pass
    except OSError:
        pytest.skip("127.0.0.2 is not usable as a source address here")

    async def scenario() -> list[int]:
        codes = []
        for _ in range(45):
            status, _, _ = await post(f"{server.url}/predict", predict_body(row), local_addr=("127.0.0.2", 0))
            codes.append(status)
        return codes

    codes = asyncio.run(scenario())
    assert codes[:25].count(200) == 25 and codes.count(429) >= 5, codes
