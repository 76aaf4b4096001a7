"""The model server as a real process on 127.0.0.1, driven over HTTP with aiohttp.

Every route, the bearer token, every error status (401/409/413/422), hot swap under concurrent
load (a dropped-in directory and an admin reload), refused versions, rollback, and the feedback
buffer end to end.  Each test builds the model directories it needs, so tests stay independent.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pandas as pd
import pytest

from model_server.tests.server_support import (
    AUTH,
    ServerProcess,
    candles_payload,
    feature_rows,
    predict_body,
    start_server,
    train_booster,
    write_model_dir,
)
from xylen.contract import HealthResponse, PredictResponse, RetrainResponse
from xylen.features import FEATURE_NAMES, FEATURE_VERSION, latest_row

MAX_BODY = 1 << 20


@pytest.fixture(scope="module")
def boosters(btc_5m_path: Path) -> dict[str, Any]:
    return {
        "a": train_booster(btc_5m_path, rounds=60, seed=0),
        "b": train_booster(btc_5m_path, rounds=40, seed=1),
        "const": train_booster(btc_5m_path, rounds=5, constant=True),
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, boosters: dict[str, Any]) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("home")
    write_model_dir(home / "models" / "v1", boosters["a"], "v1")
    env = {"RETRAIN_MIN_SAMPLES": "80", "TRAINING_INTERVAL": "0", "MAX_BODY_BYTES": str(MAX_BODY)}
    proc = start_server(home, env)
    yield proc
    proc.stop()
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status says why it stopped
    assert proc.proc.returncode in (0, -15), proc.output()
    assert "Application shutdown complete" in proc.output()


@pytest.fixture(scope="module")
def rows(btc_5m_path: Path) -> list[dict[str, float]]:
    return feature_rows(btc_5m_path, 64)


@asynccontextmanager
async def client(headers: dict[str, str] | None = AUTH) -> AsyncIterator[aiohttp.ClientSession]:
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
        yield session


async def call(
    method: str, url: str, body: Any = None, *, data: Any = None, headers: dict[str, str] | None = AUTH
) -> tuple[int, Any]:
    async with client(headers) as s, s.request(method, url, json=body, data=data) as resp:
        ctype = resp.headers.get("content-type", "")
        return resp.status, (await resp.json()) if "json" in ctype else await resp.text()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def current_version(server: ServerProcess) -> str:
    status, body = run(call("GET", f"{server.url}/health", headers=None))
    assert status == 200
    version: str = body["model_version"]
    return version


def test_health_and_metrics_need_no_token(server: ServerProcess) -> None:
    status, body = run(call("GET", f"{server.url}/health", headers=None))
    assert status == 200
    health = HealthResponse.model_validate(body)
    assert health.status == "ok" and health.model_loaded and health.model_type == "lightgbm"
    assert health.memory_usage_mb > 10 and health.last_trained == 1_706_745_600_000
    status, text = run(call("GET", f"{server.url}/metrics", headers=None))
    assert status == 200
    for name in (
        "xylen_model_info{",
        "xylen_model_prediction_latency_seconds_bucket",
        "xylen_model_http_requests_total",
        "xylen_model_memory_rss_bytes",
        "xylen_model_hot_swaps_total",
        "xylen_model_retrain_duration_seconds",
        "process_resident_memory_bytes",
    ):
        assert name in text


def test_predict_with_features(server: ServerProcess, rows: list[dict[str, float]]) -> None:
    body = predict_body(rows[0], meta={"price": 40_000.0})
    status, out = run(call("POST", f"{server.url}/predict", body))
    assert status == 200, out
    resp = PredictResponse.model_validate(out)
    assert resp.request_id == "req-1" and resp.backend == "lightgbm" and resp.latency_ms > 0
    assert 0 <= resp.prob_up <= 1 and resp.confidence == max(resp.prob_up, 1 - resp.prob_up)
    assert abs(resp.raw_score - np.log(resp.prob_up / (1 - resp.prob_up))) < 1e-6
    expected = "LONG" if resp.prob_up >= 0.55 else "SHORT" if resp.prob_up <= 0.45 else "HOLD"
    assert resp.action == expected
    atr = rows[0]["atr_14_rel"] * 40_000.0  # the ATR in price units at the given price
    if resp.action == "LONG":
        assert resp.stop_loss == pytest.approx(40_000 - 1.5 * atr) and resp.take_profit == pytest.approx(
            40_000 + 2.5 * atr
        )
    elif resp.action == "SHORT":
        assert resp.stop_loss == pytest.approx(40_000 + 1.5 * atr) and resp.take_profit == pytest.approx(
            40_000 - 2.5 * atr
        )


def test_predict_from_candles_matches_features(server: ServerProcess, btc_5m_path: Path) -> None:
    candles = candles_payload(btc_5m_path, 600)
    status, from_candles = run(call("POST", f"{server.url}/predict", predict_body(None, candles=candles)))
    assert status == 200, from_candles
    arr = np.asarray(candles, dtype=np.float64)
    cols = ["open_time", "open", "high", "low", "close", "volume"]
    row = latest_row({c: arr[:, i] for i, c in enumerate(cols)}, "5m")
    feats = {n: row[n] for n in FEATURE_NAMES}
    status, from_features = run(call("POST", f"{server.url}/predict", predict_body(feats)))
    assert status == 200
    assert from_candles["prob_up"] == pytest.approx(from_features["prob_up"], abs=1e-6)
    if from_candles["action"] != "HOLD":
        assert abs(from_candles["stop_loss"] - candles[-1][4]) == pytest.approx(
            1.5 * row["atr_14_rel"] * candles[-1][4], rel=1e-4
        )


@pytest.mark.parametrize("route", ["/predict", "/retrain", "/admin/reload", "/admin/rollback"])
def test_token_is_required(server: ServerProcess, route: str, rows: list[dict[str, float]]) -> None:
    for headers in (None, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}):
        status, body = run(call("POST", f"{server.url}{route}", predict_body(rows[0]), headers=headers))
        assert status == 401 and body["detail"] == "missing or invalid bearer token"


def test_bad_bodies_get_422_with_the_error_list(server: ServerProcess, rows: list[dict[str, float]]) -> None:
    url = f"{server.url}/predict"
    status, body = run(call("POST", url, data=b"{not json"))
    assert status == 422 and isinstance(body["detail"], list) and body["detail"][0]["type"] == "json_invalid"
    for bad in (
        {},
        predict_body(rows[0], symbol="btc/usdt"),
        predict_body(rows[0], extra_field=1),
        predict_body({"rsi_14": "high"}),
        predict_body(None),  # neither features nor candles
        predict_body(None, candles=[[1, 2, 3]]),
    ):
        status, body = run(call("POST", url, bad))
        assert status == 422 and isinstance(body["detail"], list), (bad, body)
    status, _ = run(call("POST", url, data=b""))
    assert status == 422
    missing = dict(rows[0])
    del missing["adx_14"]
    status, body = run(call("POST", url, predict_body(missing)))
    assert status == 422 and "adx_14" in body["detail"]
    status, body = run(
        call("POST", url, predict_body(None, candles=[[i * 300_000, 1, 2, 0.5, 1, 1] for i in range(20)]))
    )
    assert status == 422 and "too few" in body["detail"]
    raw = b'{"request_id":"x","symbol":"BTCUSDT","timeframe":"5m","timestamp":1,"feature_version":"f3",'
    status, body = run(call("POST", url, data=raw + b'"candles":[[1,1e400,1,1,1,1]]}'))
    assert status == 422


def test_unknown_feature_version_or_timeframe_gets_409(
    server: ServerProcess, rows: list[dict[str, float]]
) -> None:
    status, body = run(call("POST", f"{server.url}/predict", predict_body(rows[0], feature_version="f0")))
    assert status == 409 and "feature_version" in body["detail"]
    status, body = run(call("POST", f"{server.url}/predict", predict_body(rows[0], timeframe="1h")))
    assert status == 409 and "timeframe" in body["detail"]


def test_oversized_bodies_get_413(server: ServerProcess) -> None:
    big = b'{"x": "' + b"a" * (MAX_BODY + 10) + b'"}'
    status, _ = run(call("POST", f"{server.url}/predict", data=big))
    assert status == 413

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b"a" * 65536

    status, _ = run(call("POST", f"{server.url}/retrain", data=chunks()))  # chunked: no Content-Length
    assert status == 413
    assert current_version(server)  # still serving


def test_retrain_writes_new_parquet_parts(server: ServerProcess, rows: list[dict[str, float]]) -> None:
    folder = server.home / "feedback"
    before = {p.name for p in folder.glob("part-*.parquet")}
    outcomes = [
        {
            "request_id": f"r{i}",
            "timestamp": 1_706_745_600_000 + i,
            "features": rows[i],
            "label": i % 2,
            "pnl": 0.5 * i,
        }
        for i in range(50)
    ]
    status, out = run(
        call("POST", f"{server.url}/retrain", {"outcomes": outcomes, "feature_version": FEATURE_VERSION})
    )
    assert status == 200, out
    first = RetrainResponse.model_validate(out)
    assert first.status == "accepted" and first.samples_received == 50
    new = sorted({p.name for p in folder.glob("part-*.parquet")} - before)
    assert len(new) == 1
    stamp = (folder / new[0]).stat().st_mtime_ns
    frame = pd.read_parquet(folder / new[0])
    assert frame["request_id"].tolist() == [f"r{i}" for i in range(50)]
    assert frame["label"].tolist() == [i % 2 for i in range(50)]
    np.testing.assert_allclose(frame["rsi_14"], [rows[i]["rsi_14"] for i in range(50)], rtol=1e-6)
    status, out = run(
        call("POST", f"{server.url}/retrain", {"outcomes": outcomes[:40], "feature_version": FEATURE_VERSION})
    )
    second = RetrainResponse.model_validate(out)
    assert second.buffer_size == first.buffer_size + 40
    assert second.retrain_scheduled and (folder / "retrain.requested").exists()  # 80 samples reached
    assert len({p.name for p in folder.glob("part-*.parquet")} - before) == 2
    assert (folder / new[0]).stat().st_mtime_ns == stamp  # never rewritten
    status, body = run(
        call("POST", f"{server.url}/retrain", {"outcomes": outcomes[:1], "feature_version": "f0"})
    )
    assert status == 409
    short = [{**outcomes[0], "features": {"rsi_14": 50.0}}]
    status, body = run(
        call("POST", f"{server.url}/retrain", {"outcomes": short, "feature_version": FEATURE_VERSION})
    )
    assert status == 422 and "lack model features" in body["detail"]
    status, body = run(
        call("POST", f"{server.url}/retrain", {"outcomes": [], "feature_version": FEATURE_VERSION})
    )
    assert status == 422


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity"])
def test_retrain_refuses_non_finite_values_with_422(
    server: ServerProcess, rows: list[dict[str, float]], bad: str
) -> None:
    folder = server.home / "feedback"
    before = sorted(p.name for p in folder.glob("part-*.parquet"))
    features = json.dumps(rows[0]).replace(str(rows[0]["rsi_14"]), bad, 1)
    assert bad in features
    clean = json.dumps(rows[0])
    for outcome in (
        f'{{"request_id": "n1", "timestamp": 1, "features": {features}, "label": 1}}',
        f'{{"request_id": "n2", "timestamp": 1, "features": {clean}, "label": 1, "pnl": {bad}}}',
    ):
        body = f'{{"outcomes": [{outcome}], "feature_version": "{FEATURE_VERSION}"}}'
        headers = {**AUTH, "Content-Type": "application/json"}
        status, out = run(call("POST", f"{server.url}/retrain", data=body.encode(), headers=headers))
        assert status == 422, out
    assert sorted(p.name for p in folder.glob("part-*.parquet")) == before  # nothing stored


async def _load(
    url: str, rows: list[dict[str, float]], seconds: float, clients: int
) -> list[list[tuple[int, str]]]:
    """``clients`` keep-alive clients posting /predict for ``seconds``: (status, version) each."""
    stop = time.monotonic() + seconds

    async def one(k: int) -> list[tuple[int, str]]:
        seen: list[tuple[int, str]] = []
        async with client() as s:
            i = k
            while time.monotonic() < stop:
                async with s.post(f"{url}/predict", json=predict_body(rows[i % len(rows)])) as resp:
                    body = await resp.json()
                    seen.append((resp.status, body.get("model_version", body.get("detail"))))
                i += clients
        return seen

    return list(await asyncio.gather(*(one(k) for k in range(clients))))


def test_hot_swap_under_load(
    server: ServerProcess, rows: list[dict[str, float]], boosters: dict[str, Any]
) -> None:
    models = server.home / "models"
    staged = write_model_dir(models / ".staged-swap-c", boosters["b"], "swap-c")

    async def scenario() -> tuple[list[list[tuple[int, str]]], int, Any]:
        load = asyncio.create_task(_load(server.url, rows, 2.0, 8))
        await asyncio.sleep(0.5)
        await asyncio.to_thread(write_model_dir, models / "swap-b", boosters["b"], "swap-b")  # the watcher's
        await asyncio.sleep(0.6)
        status, body = await call("POST", f"{server.url}/admin/reload", {"path": staged.name})
        return await load, status, body

    results, status, body = run(scenario())
    assert status == 200 and body["model_version"] == "swap-c" and body["canary_rows"] >= 8, body
    flat = [r for per_client in results for r in per_client]
    assert len(flat) > 200
    assert all(code == 200 for code, _ in flat), {c for c, _ in flat}
    order = {"swap-b": 1, "swap-c": 2}
    for per_client in results:
        ranks = [order.get(v, 0) for _, v in per_client]
        assert ranks == sorted(ranks)  # never back to an older version
    versions = [v for _, v in flat]
    assert "swap-b" in versions and "swap-c" in versions and versions[0] not in ("swap-b", "swap-c")
    assert current_version(server) == "swap-c"


def test_bad_versions_are_refused_and_old_keeps_serving(
    server: ServerProcess, rows: list[dict[str, float]], boosters: dict[str, Any]
) -> None:
    run(call("POST", f"{server.url}/predict", predict_body(rows[1])))
    models = server.home / "models"
    serving = current_version(server)
    corrupt = write_model_dir(models / ".bad-corrupt", boosters["a"], "bad-corrupt", onnx=False)
    (corrupt / "model.txt").write_text("garbage\n")
    status, body = run(call("POST", f"{server.url}/admin/reload", {"path": corrupt.name}))
    assert status == 422 and "LightGBM cannot load" in body["detail"]
    const = write_model_dir(models / ".bad-const", boosters["const"], "bad-const", onnx=False)
    status, body = run(call("POST", f"{server.url}/admin/reload", {"path": const.name}))
    assert status == 422 and "constant" in body["detail"]
    old = write_model_dir(models / ".bad-f0", boosters["a"], "bad-f0", feature_version="f0")
    status, body = run(call("POST", f"{server.url}/admin/reload", {"path": old.name}))
    assert status == 409 and "feature_version" in body["detail"]
    for path in ("../../etc", "/etc", "no-such-version", "a\x00b"):
        status, body = run(call("POST", f"{server.url}/admin/reload", {"path": path}))
        assert status == 422, (path, body)
    write_model_dir(models / "zz-corrupt", boosters["a"], "zz-corrupt", onnx=False)
    (models / "zz-corrupt" / "model.txt").write_text("garbage\n")  # the watcher finds it and refuses it
    time.sleep(0.8)
    assert current_version(server) == serving
    status, out = run(call("POST", f"{server.url}/predict", predict_body(rows[0])))
    assert status == 200 and out["model_version"] == serving
    _, metrics = run(call("GET", f"{server.url}/metrics", headers=None))
    refused = [
        ln for ln in metrics.splitlines() if ln.startswith('xylen_model_hot_swaps_total{result="refused"}')
    ]
    assert refused and float(refused[0].split()[-1]) >= 4


def test_onnx_serves_when_model_txt_is_corrupt(
    server: ServerProcess, rows: list[dict[str, float]], boosters: dict[str, Any]
) -> None:
    run(call("POST", f"{server.url}/predict", predict_body(rows[2])))
    folder = write_model_dir(server.home / "models" / ".onnx-only", boosters["a"], "onnx-only")
    (folder / "model.txt").write_text("garbage\n")
    status, body = run(call("POST", f"{server.url}/admin/reload", {"path": folder.name}))
    assert status == 200 and body["backend"] == "onnx" and "lightgbm" in body["fallback"]
    status, out = run(call("POST", f"{server.url}/predict", predict_body(rows[0])))
    assert out["backend"] == "onnx" and out["model_version"] == "onnx-only"


def test_rollback(server: ServerProcess, rows: list[dict[str, float]], boosters: dict[str, Any]) -> None:
    run(call("POST", f"{server.url}/predict", predict_body(rows[3])))
    models = server.home / "models"
    for name, key in (("rb-1", "a"), ("rb-2", "b")):
        write_model_dir(models / f".{name}", boosters[key], name)
        status, body = run(call("POST", f"{server.url}/admin/reload", {"path": f".{name}"}))
        assert status == 200 and body["model_version"] == name
    status, body = run(call("POST", f"{server.url}/admin/rollback", data=b""))
    assert status == 200 and body["status"] == "rolled_back" and body["model_version"] == "rb-1"
    assert "rb-2" not in body["versions"]
    assert current_version(server) == "rb-1"
    status, body = run(call("POST", f"{server.url}/admin/rollback", {"version": "never-loaded"}))
    assert status == 409
    status, body = run(call("POST", f"{server.url}/admin/reload", data=b""))  # newest directory by name
    assert (status == 200 and body["model_version"] == "zz-corrupt") or status == 422
    shutil.rmtree(models / ".rb-1")


def test_openapi_documents_the_bodies(server: ServerProcess) -> None:
    status, schema = run(call("GET", f"{server.url}/openapi.json", headers=None))
    assert status == 200
    for name in ("PredictRequest", "RetrainRequest", "Outcome", "PredictResponse", "HealthResponse"):
        assert name in schema["components"]["schemas"]
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/PredictRequest"}


def test_a_client_gone_mid_body_leaves_no_traceback(server: ServerProcess) -> None:
    """A client that sends half a body and hangs up is logged as a disconnect, never a traceback."""
    before = len(server.output())
    for route in ("/predict", "/retrain"):
        head = (
            f"POST {route} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {AUTH['Authorization']}\r\n"
            "Content-Type: application/json\r\nContent-Length: 50000\r\n\r\n"
        )
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(head.encode() + b'{"outcomes": [' + b" " * 1000)
            time.sleep(0.3)  # the handler is now waiting for the rest of the body
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and "disconnected" not in server.output()[before:]:
        time.sleep(0.1)
    status, _ = run(call("GET", f"{server.url}/health", headers=None))
    assert status == 200  # still serving
    log = server.output()[before:]
    assert "disconnected" in log, log
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log
