"""Online recalibration of batch models: the map itself on real labels, and a real server process
that learns it from ``/retrain`` outcomes, serves it, reports it, and restores it after a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import numpy.typing as npt
import pytest

from model_server.recalibration import MAX_INTERCEPT, OnlineRecalibration, prequential
from model_server.tests.server_support import (
    AUTH,
    dataset,
    metadata,
    predict_body,
    start_server,
    train_booster,
    write_model_dir,
)
from model_server.training.walk_forward import expected_calibration_error
from xylen.features import FEATURE_VERSION
from xylen.probability import LOGIT_EPS


def _log_loss(y: npt.NDArray[np.float64], p: npt.NDArray[np.float64]) -> float:
    q = np.clip(p, LOGIT_EPS, 1 - LOGIT_EPS)
    return float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))


def test_no_outcomes_serve_the_model_unchanged() -> None:
    recal = OnlineRecalibration()
    assert recal.apply_one(0.537) == 0.537
    assert np.allclose(recal.apply([0.2, 0.5, 0.8]), [0.2, 0.5, 0.8])
    identity = {"recalibration_intercept": 0.0, "recalibration_slope": 1.0, "recalibration_outcomes": 0}
    assert recal.health() == identity


def test_a_few_outcomes_move_the_map_little_and_it_refits_in_batches() -> None:
    recal = OnlineRecalibration(prior_outcomes=1000, refit_every=32)
    recal.update(np.full(31, 0.5), np.zeros(31))
    assert recal.coef == (0.0, 1.0)  # no refit before 32 outcomes
    recal.update([0.5], [0])
    # 32 outcomes all down against a prior worth 1,000: the intercept moves by about -32/1032 * 4 / 4
    assert -0.2 < recal.intercept < -0.02
    assert recal.outcomes == 32


def test_the_map_is_bounded_whatever_the_outcomes() -> None:
    recal = OnlineRecalibration(prior_outcomes=10)
    recal.update(np.full(20_000, 0.9), np.zeros(20_000))
    assert recal.intercept >= -MAX_INTERCEPT
    assert 0.0 <= recal.slope <= 2.0


def test_a_drifted_model_is_brought_back_on_real_labels(btc_5m_path: Path) -> None:
    """A model that learned a bull market's up share answers 0.56 on average on the real newest
    months; recalibrated prequentially (each label known 12 rows later), its calibration error and
    log-loss come down toward the constant's."""
    _, y, _ = dataset(btc_5m_path, rows=8000)
    y = y.astype(np.float64)
    rng = np.random.default_rng(0)
    static = np.clip(0.56 + 0.02 * rng.standard_normal(len(y)), 0.01, 0.99)  # biased, no skill
    served = prequential(static, y, delay=12)
    base = np.full(len(y), y.mean())
    assert expected_calibration_error(y, served) < 0.5 * expected_calibration_error(y, static)
    assert _log_loss(y, served) < _log_loss(y, static)
    assert _log_loss(y, served) - _log_loss(y, base) < 0.002
    # prequential: the first answers precede every outcome and are the model's own
    assert np.array_equal(served[:32], static[:32])


def test_prequential_answers_never_use_their_own_outcomes() -> None:
    """Flipping the outcomes of the last rows changes none of the answers before they arrive."""
    rng = np.random.default_rng(1)
    p = rng.uniform(0.3, 0.7, 3000)
    y = (rng.uniform(size=3000) < p).astype(np.float64)
    flipped = y.copy()
    flipped[2000:] = 1 - flipped[2000:]
    a = prequential(p, y, delay=12)
    b = prequential(p, flipped, delay=12)
    assert np.array_equal(a[:2012], b[:2012])  # row 2000's outcome is known from row 2012 on
    assert not np.array_equal(a, b)


# --------------------------------------------------------------------------- a real server


async def _post(url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=30)
    async with (
        aiohttp.ClientSession(headers=AUTH, timeout=timeout) as session,
        session.post(f"{url}{path}", json=body) as resp,
    ):
        assert resp.status == 200, await resp.text()
        data: dict[str, Any] = await resp.json()
        return data


async def _health(url: str) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.get(f"{url}/health") as resp:
        data: dict[str, Any] = await resp.json()
        return data


@pytest.mark.slow
def test_a_server_learns_the_map_from_outcomes_and_keeps_it_across_a_restart(
    tmp_path: Path, btc_5m_path: Path
) -> None:
    booster = train_booster(btc_5m_path, rounds=40, seed=3)
    write_model_dir(tmp_path / "models" / "v1", booster, "v1")
    x, _, _ = dataset(btc_5m_path, rows=1200)
    rows = [{str(k): float(v) for k, v in r.items()} for r in x.to_dict("records")]
    probe = rows[-1]
    train_end = metadata("v1").train_end
    before = [
        {"request_id": f"old-{i}", "timestamp": train_end - 1000 * (i + 1), "features": r, "label": 0}
        for i, r in enumerate(rows[:400])
    ]
    after = [
        {"request_id": f"new-{i}", "timestamp": train_end + 300_000 * (i + 1), "features": r, "label": 0}
        for i, r in enumerate(rows[400:1100])
    ]
    server = start_server(tmp_path, {"MODEL_TYPE": "lightgbm"})
    try:
        first = asyncio.run(_post(server.url, "/predict", predict_body(probe)))["prob_up"]
        health = asyncio.run(_health(server.url))
        assert health["recalibration_outcomes"] == 0 and health["recalibration_slope"] == 1.0
        # outcomes of candles inside the training span are stored but teach the map nothing
        asyncio.run(_post(server.url, "/retrain", {"outcomes": before, "feature_version": FEATURE_VERSION}))
        assert asyncio.run(_health(server.url))["recalibration_outcomes"] == 0
        assert asyncio.run(_post(server.url, "/predict", predict_body(probe)))["prob_up"] == first
        # 700 later outcomes, every one down: the served probability falls
        asyncio.run(_post(server.url, "/retrain", {"outcomes": after, "feature_version": FEATURE_VERSION}))
        health = asyncio.run(_health(server.url))
        assert health["recalibration_outcomes"] == 700
        assert health["recalibration_intercept"] < -0.1
        lowered = asyncio.run(_post(server.url, "/predict", predict_body(probe)))
        assert lowered["prob_up"] < first - 0.02
        assert lowered["raw_score"] == pytest.approx(
            np.log(first / (1 - first)), abs=1e-6
        )  # raw_score stays the model's own (no calibration file: raw == calibrated)
    finally:
        server.stop()
    # a restart rebuilds the map from the feedback buffer at the first /retrain
    server = start_server(tmp_path, {"MODEL_TYPE": "lightgbm"})
    try:
        last_ts = train_end + 300_000 * (len(after) + 1)
        one_more = [{**after[-1], "request_id": "new-last", "timestamp": last_ts}]
        asyncio.run(_post(server.url, "/retrain", {"outcomes": one_more, "feature_version": FEATURE_VERSION}))
        health = asyncio.run(_health(server.url))
        assert health["recalibration_outcomes"] == 701
        again = asyncio.run(_post(server.url, "/predict", predict_body(probe)))["prob_up"]
        assert again == pytest.approx(lowered["prob_up"], abs=0.01)
    finally:
        server.stop()
