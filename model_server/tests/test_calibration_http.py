"""Over HTTP: a model directory with ``calibration.json`` is served calibrated by the LightGBM and the
ONNX server alike, while ``raw_score`` stays the log-odds of the uncalibrated probability."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from model_server.calibration import Calibrator
from model_server.tests.server_support import (
    AUTH,
    ServerProcess,
    feature_rows,
    predict_body,
    start_server,
    train_booster,
    write_model_dir,
)
from xylen.features import FEATURE_NAMES

PLATT = Calibrator("platt", 0.52, 0.1, (0.4, 0.05))  # damp the log-odds, shrink 10 % to 0.52


@pytest.fixture(scope="module")
def booster(btc_5m_path: Path) -> Any:
    return train_booster(btc_5m_path, rounds=60, seed=0)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory, booster: Any) -> Iterator[dict[str, ServerProcess]]:
    started: dict[str, ServerProcess] = {}
    try:
        for backend in ("lightgbm", "onnx"):
            home = tmp_path_factory.mktemp(f"home-{backend}")
            folder = write_model_dir(home / "models" / "v1", booster, "v1")
            PLATT.save(folder)
            started[backend] = start_server(home, {"MODEL_TYPE": backend})
        yield started
    finally:
        for proc in started.values():
            proc.stop()


async def _predict(url: str, rows: list[dict[str, float]]) -> list[dict[str, Any]]:
    timeout = aiohttp.ClientTimeout(total=10)
    out: list[dict[str, Any]] = []
    async with aiohttp.ClientSession(headers=AUTH, timeout=timeout) as session:
        for k, row in enumerate(rows):
            body = predict_body(row, request_id=f"cal-{k}")
            async with session.post(f"{url}/predict", json=body) as resp:
                assert resp.status == 200, await resp.text()
                out.append(await resp.json())
    return out


def test_both_backends_serve_the_calibrated_probability_and_the_raw_score(
    servers: dict[str, ServerProcess], booster: Any, btc_5m_path: Path
) -> None:
    rows = feature_rows(btc_5m_path, 40)
    raw = booster.predict(np.array([[r[n] for n in FEATURE_NAMES] for r in rows], dtype=np.float32))
    expected = PLATT.apply(raw)
    assert np.abs(expected - raw).max() > 0.005  # the map really changes the answers
    answers = {name: asyncio.run(_predict(proc.url, rows)) for name, proc in servers.items()}
    for name, answer in answers.items():
        assert all(a["backend"] == name for a in answer)
        prob = np.array([a["prob_up"] for a in answer])
        raw_score = np.array([a["raw_score"] for a in answer])
        np.testing.assert_allclose(prob, expected, atol=1e-6)
        np.testing.assert_allclose(raw_score, [math.log(p / (1 - p)) for p in raw], atol=1e-5)
        np.testing.assert_allclose([a["confidence"] for a in answer], np.maximum(prob, 1 - prob), atol=1e-12)
    lgb_prob = np.array([a["prob_up"] for a in answers["lightgbm"]])
    onnx_prob = np.array([a["prob_up"] for a in answers["onnx"]])
    np.testing.assert_allclose(onnx_prob, lgb_prob, atol=1e-6)
