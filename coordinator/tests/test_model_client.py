"""``ModelClients`` against REAL model server processes (``python -m model_server``, a small LightGBM
model trained on the shipped BTC 5m candles), plus one seam fake.

The fake (:func:`fake_server`) is a tiny in-process aiohttp app that answers ``/predict`` with a valid
:class:`PredictResponse` after a chosen delay: a real model server answers in about a millisecond,
so the fake is how a slow host is made to miss a timeout or the beat's deadline, and how fan-out
parallelism is shown (total time close to the slowest server, not the sum).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from coordinator.ensemble.types import Vote
from coordinator.model_client import ModelClients, VoteStatus
from model_server.tests.server_support import (
    TOKEN,
    ServerProcess,
    feature_rows,
    free_port,
    start_server,
    train_booster,
    write_model_dir,
)
from xylen.config.schema import ModelServerConfig
from xylen.contract import HealthResponse, Outcome, PredictRequest, PredictResponse
from xylen.features import FEATURE_VERSION


@pytest.fixture(scope="module")
def booster(btc_5m_path: Path) -> Any:
    return train_booster(btc_5m_path, rounds=20, seed=0)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory, booster: Any) -> Iterator[dict[str, ServerProcess]]:
    """Two servers of the same real model."""
    procs: dict[str, ServerProcess] = {}
    try:
        for name in ("a", "b"):
            home = tmp_path_factory.mktemp(f"home-{name}")
            write_model_dir(home / "models" / "v1", booster, "v1")
            procs[name] = start_server(home, {"TRAINING_INTERVAL": "0", "MODEL_ID": f"test/{name}"})
        yield procs
    finally:
        for proc in procs.values():
            proc.stop()


@pytest.fixture(scope="module")
def request_body(btc_5m_path: Path) -> PredictRequest:
    return PredictRequest(
        request_id="beat-1",
        symbol="BTCUSDT",
        timeframe="5m",
        timestamp=1_706_745_599_999,
        features=feature_rows(btc_5m_path, 1)[0],
        feature_version=FEATURE_VERSION,
    )


def cfg(sid: str, url: str, timeout_ms: int = 2000, enabled: bool = True) -> ModelServerConfig:
    return ModelServerConfig(id=sid, url=url, timeout_ms=timeout_ms, enabled=enabled)


@asynccontextmanager
async def fake_server(delay_s: float) -> AsyncIterator[str]:
    """FAKE at the seam: a model server that answers a valid ``/predict`` after ``delay_s``."""

    async def predict(request: web.Request) -> web.Response:
        req = PredictRequest.model_validate_json(await request.read())
        await asyncio.sleep(delay_s)
        resp = PredictResponse(
            request_id=req.request_id,
            model_id="fake/slow",
            model_version="fake",
            backend="lightgbm",
            action="LONG",
            prob_up=0.6,
            confidence=0.6,
            raw_score=0.4,
            latency_ms=delay_s * 1000,
        )
        return web.Response(body=resp.model_dump_json(), content_type="application/json")

    async def health(request: web.Request) -> web.Response:
        body = HealthResponse(
            status="ok",
            uptime_seconds=1,
            memory_usage_mb=1,
            model_loaded=True,
            model_type="lightgbm",
            model_version="fake",
        )
        return web.Response(body=body.model_dump_json(), content_type="application/json")

    async def retrain(request: web.Request) -> web.Response:
        return web.Response(status=500, text="trainer exploded")

    app = web.Application()
    app.router.add_post("/predict", predict)
    app.router.add_get("/health", health)
    app.router.add_post("/retrain", retrain)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def start_on_port(home: Path, port: int) -> ServerProcess:
    """A model server on a given port (to restart a server where it was), no background training."""
    return start_server(home, env={"TRAINING_INTERVAL": "0"}, port=port)


def test_parallel_fanout_votes_from_real_servers(
    servers: dict[str, ServerProcess], request_body: PredictRequest
) -> None:
    async def go() -> None:
        async with fake_server(0.3) as slow1, fake_server(0.3) as slow2, fake_server(0.3) as slow3:
            configs = [
                cfg("a", servers["a"].url),
                cfg("b", servers["b"].url),
                cfg("slow1", slow1),
                cfg("slow2", slow2),
                cfg("slow3", slow3),
                cfg("off", "http://127.0.0.1:9", enabled=False),
            ]
            async with ModelClients(configs, TOKEN) as clients:
                await clients.predict_all(request_body, 5.0)  # warm the keep-alive connections
                fan = await clients.predict_all(request_body, 5.0)
        assert [r.server_id for r in fan.results] == ["a", "b", "slow1", "slow2", "slow3"]
        assert all(r.status is VoteStatus.OK for r in fan.results), fan.results
        # in parallel: about the slowest (0.3 s), far below the sum (0.9 s)
        assert 0.3 <= fan.duration_s < 0.6, fan.duration_s
        assert [v.model_id for v in fan.votes] == ["a", "b", "slow1", "slow2", "slow3"]
        assert all(isinstance(v, Vote) and v.usable for v in fan.votes)
        real = fan.result("a")
        assert real.response is not None and real.response.model_id == "test/a"
        assert real.response.model_version == "v1"
        assert fan.votes[0].prob_up == real.response.prob_up
        assert 0 < fan.votes[0].latency_ms < 300
        # the same model on both real servers gives the same probability
        assert fan.votes[0].prob_up == fan.votes[1].prob_up

    asyncio.run(go())


def test_deadline_skips_slow_server_and_timeout_is_reported(
    servers: dict[str, ServerProcess], request_body: PredictRequest
) -> None:
    async def go() -> None:
        async with fake_server(3.0) as very_slow, fake_server(1.0) as slow:
            configs = [
                cfg("a", servers["a"].url),
                cfg("very_slow", very_slow, timeout_ms=10_000),
                cfg("slow", slow, timeout_ms=100),
            ]
            async with ModelClients(configs, TOKEN, failures_before_backoff=5) as clients:
                t0 = time.perf_counter()
                fan = await clients.predict_all(request_body, 0.4)
                took = time.perf_counter() - t0
                assert clients.is_up("very_slow")  # one missed beat is not yet a dead server
        assert took < 0.9, took
        assert fan.result("a").status is VoteStatus.OK
        assert fan.result("very_slow").status is VoteStatus.DEADLINE
        assert fan.result("slow").status is VoteStatus.TIMEOUT
        assert fan.count(VoteStatus.DEADLINE) == 1
        assert [v.model_id for v in fan.votes] == ["a"]

    asyncio.run(go())


def test_wrong_token_is_error_401_and_feature_mismatch_is_409(
    servers: dict[str, ServerProcess], request_body: PredictRequest
) -> None:
    async def go() -> None:
        async with ModelClients([cfg("a", servers["a"].url)], "not-the-token") as clients:
            fan = await clients.predict_all(request_body, 2.0)
        r = fan.result("a")
        assert (r.status, r.http_status) == (VoteStatus.ERROR, 401)
        assert "bearer" in r.detail.lower()
        assert fan.votes == ()

        # the coordinator computes another feature_version than the server's model serves
        other = request_body.model_copy(update={"feature_version": "fX"})
        async with ModelClients([cfg("m", servers["b"].url)], TOKEN, failures_before_backoff=1) as c:
            for _ in range(3):
                fan = await c.predict_all(other, 2.0)
                m = fan.result("m")
                assert (m.status, m.http_status) == (VoteStatus.FEATURE_MISMATCH, 409)
                assert FEATURE_VERSION in m.detail, m.detail
            assert c.is_up("m")  # alive: a mismatch never puts a server in backoff

    asyncio.run(go())


def test_dead_server_backs_off_then_rejoins_after_restart(
    tmp_path: Path, booster: Any, request_body: PredictRequest
) -> None:
    home = tmp_path / "home"
    write_model_dir(home / "models" / "v1", booster, "v1")
    port = free_port()
    proc = start_on_port(home, port)
    try:

        async def go() -> None:
            nonlocal proc
            configs = [cfg("c", proc.url)]
            async with ModelClients(configs, TOKEN, backoff_base_s=0.2, backoff_cap_s=0.5) as clients:
                assert (await clients.predict_all(request_body, 2.0)).result("c").status is VoteStatus.OK
                await asyncio.to_thread(proc.stop)

                fan = await clients.predict_all(request_body, 2.0)
                assert fan.result("c").status is VoteStatus.ERROR
                assert not clients.is_up("c")
                state = clients.states()[0]
                assert state.in_backoff and state.backoff_attempt == 1

                # not asked while in backoff, and probes keep failing (backoff grows, capped)
                t0 = time.perf_counter()
                fan = await clients.predict_all(request_body, 2.0)
                assert fan.result("c").status is VoteStatus.BACKOFF
                assert time.perf_counter() - t0 < 0.05
                await asyncio.sleep(0.6)
                await clients.probe_due()
                assert state.in_backoff and state.backoff_attempt == 2

                proc = await asyncio.to_thread(start_on_port, home, port)
                deadline = time.monotonic() + 10
                while not clients.is_up("c") and time.monotonic() < deadline:
                    await clients.probe_due()
                    await asyncio.sleep(0.1)
                assert clients.is_up("c")
                fan = await clients.predict_all(request_body, 2.0)
                assert fan.result("c").status is VoteStatus.OK
                assert [v.model_id for v in fan.votes] == ["c"]

        asyncio.run(go())
    finally:
        proc.stop()


def test_retrain_all_posts_outcomes_and_never_raises(
    servers: dict[str, ServerProcess], btc_5m_path: Path
) -> None:
    rows = feature_rows(btc_5m_path, 5)
    outcomes = [
        Outcome(request_id=f"r{i}", timestamp=1_706_745_599_999 + i, features=row, label=i % 2, pnl=0.5)
        for i, row in enumerate(rows)
    ]

    async def go() -> None:
        async with fake_server(0.0) as broken:
            configs = [
                cfg("a", servers["a"].url),
                cfg("broken", broken),
                cfg("dead", f"http://127.0.0.1:{free_port()}"),
            ]
            async with ModelClients(configs, TOKEN, retrain_timeout_s=5) as clients:
                # the dead server goes into backoff in the beat and is not posted to
                await clients.predict_all(
                    PredictRequest(
                        request_id="x",
                        symbol="BTCUSDT",
                        timeframe="5m",
                        timestamp=0,
                        features=rows[0],
                        feature_version=FEATURE_VERSION,
                    ),
                    2.0,
                )
                results = {r.server_id: r for r in await clients.retrain_all(outcomes, FEATURE_VERSION)}
                assert await clients.retrain_all([], FEATURE_VERSION) == []
        assert set(results) == {"a", "broken"}
        assert results["a"].ok and results["a"].samples_sent == 5
        assert not results["broken"].ok and results["broken"].http_status == 500

    asyncio.run(go())
