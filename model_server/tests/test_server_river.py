"""A River server process: online learning from /retrain, and kill -9 during retrain."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import aiohttp
import pyarrow.parquet as pq
import pytest
from pydantic import BaseModel, ConfigDict

from model_server.feedback import FeedbackBuffer
from model_server.online import BaseRate
from model_server.predictors.river import RiverPredictor
from model_server.registry import default_river_metadata
from model_server.tests.server_support import (
    AUTH,
    ServerProcess,
    dataset,
    predict_body,
    start_server,
    train_booster,
    write_model_dir,
)
from xylen.contract import HealthResponse, Outcome
from xylen.features import FEATURE_VERSION


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = start_server(tmp_path_factory.mktemp("river"), {"MODEL_TYPE": "river"})
    yield proc
    proc.stop()


def outcomes(path: Path, n: int, offset: int = 0) -> list[dict[str, Any]]:
    x, y, _ = dataset(path)
    rows = x.iloc[offset : offset + n].to_dict("records")
    return [
        {
            "request_id": f"o{offset + i}",
            "timestamp": 1_700_000_000_000 + i,
            "features": r,
            "label": int(y[offset + i]),
        }
        for i, r in enumerate(rows)
    ]


async def call(session: aiohttp.ClientSession, method: str, url: str, body: Any = None) -> tuple[int, Any]:
    async with session.request(method, url, json=body) as resp:
        return resp.status, await resp.json()


def test_river_learns_from_retrain(server: ServerProcess, btc_5m_path: Path) -> None:
    probe = outcomes(btc_5m_path, 1, offset=5000)[0]["features"]

    async def scenario() -> None:
        async with aiohttp.ClientSession(headers=AUTH, timeout=aiohttp.ClientTimeout(total=20)) as s:
            status, health = await call(s, "GET", f"{server.url}/health")
            assert health["model_type"] == "river" and health["model_loaded"]
            status, before = await call(s, "POST", f"{server.url}/predict", predict_body(probe))
            assert status == 200 and before["prob_up"] == 0.5 and before["action"] == "HOLD"
            batch = outcomes(btc_5m_path, 600)
            status, out = await call(
                s, "POST", f"{server.url}/retrain", {"outcomes": batch, "feature_version": FEATURE_VERSION}
            )
            assert status == 200 and out["samples_received"] == 600, out
            status, after = await call(s, "POST", f"{server.url}/predict", predict_body(probe))
            assert status == 200 and after["backend"] == "river"
            # 600 outcomes are too few to claim skill: the answer is the base rate of the outcomes
            base = BaseRate()
            for outcome in batch:
                base.update(outcome["label"])
            assert after["prob_up"] == pytest.approx(base.rate, abs=1e-12) and after["action"] == "HOLD"
            status, health = await call(s, "GET", f"{server.url}/health")
            assert status == 200 and health["online_outcomes"] == 600
            assert health["online_answering"] == "base_rate"
            # the answers given before each outcome were the base rate's: same log-loss as the constant
            assert 0.6 < health["prequential_log_loss"] < 0.8
            assert health["prequential_log_loss"] == pytest.approx(health["constant_log_loss"], abs=1e-9)

    asyncio.run(scenario())
    frame = FeedbackBuffer(server.home / "feedback").read()
    assert len(frame) == 600 and frame["request_id"].iloc[-1] == "o599"


def test_kill_9_during_retrain_leaves_only_complete_parts(tmp_path: Path, btc_5m_path: Path) -> None:
    server = start_server(tmp_path / "home", {"MODEL_TYPE": "river", "MAX_QUEUE_DEPTH": "64"})
    batch: dict[str, Any] = {"outcomes": outcomes(btc_5m_path, 3000), "feature_version": FEATURE_VERSION}
    ok = 0

    async def hammer(stop: float) -> None:
        nonlocal ok
        async with aiohttp.ClientSession(headers=AUTH, timeout=aiohttp.ClientTimeout(total=20)) as s:
            while time.monotonic() < stop:
                try:
                    async with s.post(f"{server.url}/retrain", json=batch) as resp:
                        ok += resp.status == 200
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    return

    async def scenario() -> None:
        clients = [asyncio.create_task(hammer(time.monotonic() + 5)) for _ in range(4)]
        folder = server.home / "feedback"
        deadline = time.monotonic() + 5
        while not list(folder.glob("part-*")) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        while not list(folder.glob(".tmp-part-*")) and time.monotonic() < deadline:
            await asyncio.sleep(0.0005)
        writing = bool(list(folder.glob(".tmp-part-*")))  # a part is being written right now
        server.kill9()
        assert writing, "the kill should land while a part is being written"
        await asyncio.gather(*clients)

    try:
        asyncio.run(scenario())
    finally:
        server.stop()
    folder = server.home / "feedback"
    parts = sorted(folder.glob("part-*.parquet"))
    assert len(parts) >= max(ok, 1)
    for part in parts:
        assert pq.read_table(part).num_rows == 3000  # every visible part is complete
    leftovers = [p.name for p in folder.iterdir() if p not in parts and p.name != "retrain.requested"]
    assert all(name.startswith(".tmp-") for name in leftovers), leftovers
    buffer = FeedbackBuffer(folder)  # a restart removes the dead writer's temp files
    assert buffer.size == 3000 * len(parts)
    assert [p.name for p in folder.iterdir() if p.name.startswith(".tmp-")] == []
    restarted = start_server(server.home, {"MODEL_TYPE": "river"})  # replays the buffer into River
    try:
        probe = outcomes(btc_5m_path, 1, offset=5000)[0]["features"]

        async def ask() -> tuple[float, dict[str, Any]]:
            async with aiohttp.ClientSession(headers=AUTH, timeout=aiohttp.ClientTimeout(total=10)) as s:
                status, out = await call(s, "POST", f"{restarted.url}/predict", predict_body(probe))
                assert status == 200
                _, health = await call(s, "GET", f"{restarted.url}/health")
                return float(out["prob_up"]), health

        prob, health = asyncio.run(ask())
        assert health["online_outcomes"] == 3000 * len(parts)  # every stored outcome was replayed
        labels = [o["label"] for o in batch["outcomes"]] * len(parts)
        base = BaseRate()
        for label in labels:
            base.update(label)
        if health["online_answering"] == "base_rate":
            assert prob == pytest.approx(base.rate, abs=1e-9)
        else:  # the same 3000 outcomes repeated may be learnable; the answer stays moderate
            assert 0.05 < prob < 0.95
    finally:
        restarted.stop()


class HealthBeforeOnlineFields(BaseModel):
    """``/health`` as clients built before the online-learning fields parse it (extra fields refused)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    status: Literal["ok", "degraded", "loading"]
    uptime_seconds: float
    memory_usage_mb: float
    model_loaded: bool
    model_type: str | None
    model_version: str | None
    last_trained: int | None = None


def test_batch_model_health_keeps_the_fields_older_clients_know(tmp_path: Path, btc_5m_path: Path) -> None:
    write_model_dir(tmp_path / "models" / "v1", train_booster(btc_5m_path, rounds=20), "v1", onnx=False)
    proc = start_server(tmp_path)
    try:

        async def get() -> Any:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
                return await call(s, "GET", f"{proc.url}/health")

        status, body = asyncio.run(get())
    finally:
        proc.stop()
    assert status == 200 and body["model_type"] == "lightgbm"
    # no online field in a batch model's body: beside the fields older clients know, only what the
    # model answers for, its label and its online recalibration (clients ignore fields they do not know)
    market = {"symbols": ["BTCUSDT"], "interval": "5m", "horizon_bars": 12, "label_band": 0.0}
    recalibration = {"recalibration_intercept": 0.0, "recalibration_slope": 1.0, "recalibration_outcomes": 0}
    assert {k: body[k] for k in market} == market
    assert {k: body[k] for k in recalibration} == recalibration  # no outcome yet: the identity
    older = {k: v for k, v in body.items() if k not in market and k not in recalibration}
    HealthBeforeOnlineFields.model_validate(older)
    parsed = HealthResponse.model_validate({**body, "a_field_from_a_newer_server": 1})
    assert parsed.prequential_log_loss is None and parsed.online_answering is None


def test_saved_state_is_not_taught_the_buffer_again(tmp_path: Path, btc_5m_path: Path) -> None:
    """A River state from ``river.pkl`` keeps its own record; only a fresh model replays the buffer."""
    x, y, _ = dataset(btc_5m_path)
    saved = RiverPredictor.fresh(default_river_metadata())
    for row, label in zip(x.head(500).to_dict("records"), y[:500], strict=True):
        saved.learn_one({str(k): float(v) for k, v in row.items()}, int(label))
    assert not saved.answering  # 500 outcomes: still answering the base rate
    (tmp_path / "models" / "r1").mkdir(parents=True)
    saved.save(tmp_path / "models" / "r1")
    buffer = FeedbackBuffer(tmp_path / "feedback")
    buffer.append([Outcome.model_validate(o) for o in outcomes(btc_5m_path, 300, offset=600)], "f2")
    proc = start_server(tmp_path, {"MODEL_TYPE": "river"})
    try:

        async def get() -> Any:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
                return await call(s, "GET", f"{proc.url}/health")

        status, health = asyncio.run(get())
    finally:
        proc.stop()
    assert status == 200 and health["model_version"] == saved.version
    assert health["online_outcomes"] == 500


def test_health_reports_the_model_beating_the_constant(tmp_path: Path, btc_5m_path: Path) -> None:
    """Real feature rows with a learnable label (RSI above 50, 20 % flipped) posted to /retrain:
    once the model has shown skill it answers itself, and /health says by how much it wins."""
    x, _, _ = dataset(btc_5m_path)
    rng = random.Random(5)
    rows = [{str(k): float(v) for k, v in r.items()} for r in x.head(7520).to_dict("records")]
    sent = [
        {
            "request_id": f"s{i}",
            "timestamp": 1_700_000_000_000 + i * 300_000,
            "features": r,
            "label": int((r["rsi_14"] > 50) != (rng.random() < 0.2)),
        }
        for i, r in enumerate(rows[:7000])
    ]
    proc = start_server(tmp_path, {"MODEL_TYPE": "river"})
    try:

        async def scenario() -> tuple[dict[str, Any], list[float]]:
            async with aiohttp.ClientSession(headers=AUTH, timeout=aiohttp.ClientTimeout(total=30)) as s:
                for start in range(0, len(sent), 1000):
                    body = {"outcomes": sent[start : start + 1000], "feature_version": FEATURE_VERSION}
                    status, _ = await call(s, "POST", f"{proc.url}/retrain", body)
                    assert status == 200
                _, health = await call(s, "GET", f"{proc.url}/health")
                probs = []
                for r in rows[7500:7520]:
                    status, out = await call(s, "POST", f"{proc.url}/predict", predict_body(r))
                    assert status == 200
                    probs.append(float(out["prob_up"]))
                return health, probs

        health, probs = asyncio.run(scenario())
    finally:
        proc.stop()
    assert health["online_outcomes"] == 7000 and health["online_answering"] == "model"
    assert health["prequential_log_loss"] < health["constant_log_loss"] - 0.02
    assert max(probs) - min(probs) > 0.05 and all(0.05 < p < 0.95 for p in probs)
