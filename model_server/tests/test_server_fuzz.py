"""Fuzzing a real server: schemathesis over its own ``/openapi.json`` (no 5xx), then Hypothesis
bodies that pass the envelope so the deep path (feature matching, candles -> features, ATR
brackets, feedback writes) sees hostile values.  Both end with a log free of tracebacks."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model_server.tests.server_support import (
    AUTH,
    TOKEN,
    ServerProcess,
    feature_rows,
    predict_body,
    start_server,
    train_booster,
    write_model_dir,
)
from xylen.features import FEATURE_NAMES, FEATURE_VERSION


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, btc_5m_path: Path) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("fuzz")
    write_model_dir(home / "models" / "v1", train_booster(btc_5m_path, rounds=30), "v1")
    proc = start_server(home, {"RETRAIN_MIN_SAMPLES": "50", "TRAINING_INTERVAL": "0"})
    yield proc
    proc.stop()
    log = proc.output()
    assert "Traceback" not in log and "Exception in ASGI" not in log, log[-4000:]


def schemathesis_cli() -> list[str]:
    exe = Path(sys.executable).parent / "schemathesis"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("schemathesis")
    if found is None:
        pytest.skip("schemathesis is not installed")
    return [found]


def test_schemathesis_finds_no_server_error(server: ServerProcess) -> None:
    cmd = [
        *schemathesis_cli(),
        "run",
        f"{server.url}/openapi.json",
        "--checks",
        "not_a_server_error,content_type_conformance",
        "--header",
        f"Authorization: Bearer {TOKEN}",
        "--max-examples",
        "60",
        "--seed",
        "7",
        "--generation-database",
        "none",
        "--request-timeout",
        "10",
        "--no-color",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False, cwd=server.home)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert " passed" in done.stdout


finite = st.floats(allow_nan=False, allow_infinity=False, width=32)
anything_float = st.one_of(
    finite, st.floats(min_value=-1e300, max_value=1e300), st.sampled_from([0.0, -0.0, 1e-45])
)
candle = st.tuples(
    st.integers(min_value=0, max_value=2**62),
    anything_float,
    anything_float,
    anything_float,
    anything_float,
    anything_float,
)


@st.composite
def predict_bodies(draw: st.DrawFn, base: dict[str, float]) -> dict[str, Any]:
    features = {name: draw(anything_float) if draw(st.booleans()) else base[name] for name in FEATURE_NAMES}
    if draw(st.booleans()):
        features.pop(draw(st.sampled_from(FEATURE_NAMES)))
    body = predict_body(features if draw(st.booleans()) else None)
    if "features" not in body or draw(st.booleans()):
        body["candles"] = draw(st.lists(candle, min_size=1, max_size=400))
    body["meta"] = draw(
        st.dictionaries(st.sampled_from(["price", "close", "x"]), st.one_of(anything_float, st.booleans()))
    )
    return body


@st.composite
def retrain_bodies(draw: st.DrawFn, base: dict[str, float]) -> dict[str, Any]:
    n = draw(st.integers(min_value=1, max_value=5))
    outcomes = []
    for i in range(n):
        feats = {k: draw(anything_float) if draw(st.booleans()) else v for k, v in base.items()}
        if draw(st.booleans()):
            feats[draw(st.sampled_from(["label", "timestamp", "zz"]))] = 1.0
        pnl = draw(st.one_of(st.none(), anything_float))
        outcomes.append(
            {
                "request_id": f"h{i}",
                "timestamp": draw(st.integers(0, 2**62)),
                "features": feats,
                "label": i % 2,
                "pnl": pnl,
            }
        )
    return {"outcomes": outcomes, "feature_version": FEATURE_VERSION}


async def _post(url: str, body: dict[str, Any]) -> int:
    async with (
        aiohttp.ClientSession(headers=AUTH, timeout=aiohttp.ClientTimeout(total=10)) as s,
        s.post(url, json=body) as resp,
    ):
        await resp.read()
        return resp.status


def test_deep_bodies_never_give_5xx(server: ServerProcess, btc_5m_path: Path) -> None:
    base = feature_rows(btc_5m_path, 1)[0]
    statuses: set[int] = set()

    @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(body=st.one_of(predict_bodies(base), retrain_bodies(base)))
    def check(body: dict[str, Any]) -> None:
        route = "/retrain" if "outcomes" in body else "/predict"
        status = asyncio.run(_post(f"{server.url}{route}", body))
        statuses.add(status)
        assert status < 500, (route, status)

    check()
    assert 200 in statuses and 422 in statuses
