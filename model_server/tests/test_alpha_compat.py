"""Clients and settings written for the 0.0.1-alpha model server keep working with wire contract v1.

A real server process on 127.0.0.1 is started from a ``models.env`` holding the alpha's keys and a
``MODEL_PATH`` naming a single ``model.txt``; alpha bodies (the alpha's example shape, with real
BTCUSDT 5m candles) are posted over HTTP and compared with the v1 answer for the same candles.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from model_server.settings import load_settings
from model_server.tests.server_support import (
    AUTH,
    REPO,
    ServerProcess,
    candles_payload,
    predict_body,
    start_server,
    train_booster,
    write_model_dir,
)
from xylen.contract import PredictResponse
from xylen.errors import ConfigError
from xylen.features import FEATURE_NAMES, latest_row

ALPHA_INDICATORS = {  # the alpha's example snapshot: its own indicator names, none a v1 feature
    "rsi": 55.2,
    "volume": 167.89,
    "volume_avg_20": 150.5,
    "ema_20": 50150.0,
    "ema_50": 49980.0,
    "macd": 45.5,
    "macd_signal": 40.2,
    "macd_histogram": 5.3,
    "bb_upper": 51000.0,
    "bb_middle": 50200.0,
    "bb_lower": 49400.0,
}


def alpha_models_env(model_path: Path, host: str = "0.0.0.0") -> str:
    """Every key of the alpha's ``models.env.example`` (values as it shipped them, paths made real)."""
    return f"""
MODEL_TYPE=lightgbm              # lightgbm, onnx, sklearn, ensemble
MODEL_PATH={model_path}
MODEL_FORMAT=lightgbm_txt
ONNX_MODEL_PATH=/opt/trading_model/models/trading_model.onnx
ONNX_ENABLED=false
ONNX_PROVIDERS=CPUExecutionProvider
ONNX_FALLBACK_TO_LIGHTGBM=true
MODEL_VERSION=1.0.0
MODEL_REGISTRY_PATH=/opt/trading_model/models/registry.json
SERVER_HOST={host}
SERVER_PORT=8000
SERVER_WORKERS=1
SERVER_LOG_LEVEL=info
SERVER_RELOAD=false
FEATURE_COUNT=29
FEATURE_ENGINEERING_ENABLED=true
FEATURE_VALIDATION_STRICT=true
FEATURE_SCALER_PATH=/opt/trading_model/models/feature_scaler.pkl
FEATURE_SCALER_TYPE=standard
DATA_PATH=/opt/trading_model/data
FEATURE_STORE_PATH=/opt/trading_model/data/feature_store
TRAINING_DATA_PATH=/opt/trading_model/data/training
FEEDBACK_BUFFER_PATH=/opt/trading_model/data/feedback_buffer.parquet
MODEL_CHECKPOINTS_PATH=/opt/trading_model/models/checkpoints
RETRAINING_ENABLED=true
RETRAINING_METHOD=incremental
INCREMENTAL_LEARNING_BACKEND=river
INCREMENTAL_LEARNING_RATE=0.01
MIN_SAMPLES_FOR_RETRAIN=100
MAX_FEEDBACK_BUFFER_SIZE=10000
FULL_RETRAIN_ENABLED=true
FULL_RETRAIN_SCHEDULE="0 2 * * *"  # 2 AM daily
FULL_RETRAIN_MIN_SAMPLES=1500
RETRAIN_MIN_FREE_MEMORY_GB=1.2
RETRAIN_MAX_SWAP_PERCENT=50
RETRAIN_TIMEOUT_SECONDS=1800
LGBM_MAX_MEMORY_GB=6.0
LGBM_NUM_THREADS=4
LGBM_MAX_BIN=255
LGBM_NUM_LEAVES=31
LGBM_LEARNING_RATE=0.05
LGBM_N_ESTIMATORS=100
DATA_COLLECTION_ENABLED=false
COLLECTION_INTERVAL=300
COLLECTION_SYMBOL=BTCUSDT
COLLECTION_TIMEFRAMES=5m,15m,1h
LOOKBACK_PERIODS=100
BINANCE_API_KEY=alpha-binance-key-0d1e
BINANCE_API_SECRET=alpha-binance-secret-7c4a
BINANCE_TESTNET=true
BINANCE_BASE_URL=https://testnet.binancefuture.com
PROMETHEUS_ENABLED=true
PROMETHEUS_PORT=9091
PROMETHEUS_PATH=/metrics
EXPOSE_MODEL_METRICS=true
EXPOSE_INFERENCE_LATENCY=true
EXPOSE_MEMORY_USAGE=true
EXPOSE_PREDICTION_DISTRIBUTION=true
LOG_PATH=/opt/trading_model/logs/model_server.log
LOG_FORMAT=json
LOG_MAX_BYTES=10485760
LOG_BACKUP_COUNT=10
BATCH_INFERENCE_ENABLED=false
BATCH_MAX_SIZE=32
BATCH_TIMEOUT_MS=100
PRELOAD_MODEL_AT_STARTUP=true
MODEL_CACHE_ENABLED=true
FEATURE_CACHE_TTL_SECONDS=0
ASYNC_INFERENCE=false
INFERENCE_THREAD_POOL_SIZE=2
HEALTH_CHECK_ENABLED=true
HEALTH_CHECK_MODEL_LOAD=true
HEALTH_CHECK_MEMORY_THRESHOLD_GB=0.5
HEALTH_CHECK_DISK_THRESHOLD_GB=1.0
ENABLE_API_KEY_AUTH=false
API_KEY=alpha-api-key-93ab
RATE_LIMIT_ENABLED=true
RATE_LIMIT_REQUESTS_PER_MINUTE=600
RATE_LIMIT_BURST=50
"""


@pytest.fixture(scope="module")
def model_dir(btc_5m_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("alpha-home")
    return write_model_dir(home / "models" / "v1", train_booster(btc_5m_path, rounds=60), "v1", onnx=False)


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The server started from an alpha models.env whose MODEL_PATH names the single model.txt."""
    home = tmp_path_factory.mktemp("alpha-server")
    env_file = home / "models.env"
    env_file.write_text(alpha_models_env(model_dir / "model.txt", host="127.0.0.1"))
    proc = start_server(home, {"MODEL_ID": "alpha-compat-model"}, ["--env-file", str(env_file)])
    yield proc
    proc.stop()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key in {"HOST", "PORT", "MODEL_PATH", "MODEL_TYPE", "MODEL_ID", "XYLEN_MODEL_TOKEN"}:
            monkeypatch.delenv(key)


async def _post(url: str, body: Any) -> tuple[int, Any]:
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(headers=AUTH, timeout=timeout) as s, s.post(url, json=body) as resp:
        return resp.status, await resp.json()


def post(server: ServerProcess, body: Any) -> tuple[int, Any]:
    return asyncio.run(_post(f"{server.url}/predict", body))


def alpha_candles(arrays: list[list[float]]) -> list[dict[str, float]]:
    keys = ("timestamp", "open", "high", "low", "close", "volume")
    return [dict(zip(keys, c, strict=True)) for c in arrays]


def alpha_body(candles: Any, **extra: Any) -> dict[str, Any]:
    """The alpha's example snapshot, with the given candles."""
    body: dict[str, Any] = {
        "symbol": "BTCUSDT",
        "timeframe": "5m",
        "candles": candles,
        "indicators": dict(ALPHA_INDICATORS),
        "meta": {"utc": "2024-01-01T12:00:00", "candles_1h": [], "note": {"a": 1}, "bars": 600},
    }
    body.update(extra)
    return body


def v1_fields(answer: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in answer.items() if k in PredictResponse.model_fields}


def test_an_alpha_body_gets_the_v1_answer_plus_model_name_and_probability(
    server: ServerProcess, btc_5m_path: Path
) -> None:
    arrays = candles_payload(btc_5m_path, 600)
    status, alpha = post(server, alpha_body(alpha_candles(arrays)))
    assert status == 200, alpha
    assert set(alpha) == set(PredictResponse.model_fields) | {"model_name", "probability"}
    resp = PredictResponse.model_validate(v1_fields(alpha))  # every v1 field, valid
    assert alpha["model_name"] == resp.model_id == "alpha-compat-model"
    assert alpha["probability"] == resp.prob_up and resp.model_version == "v1"
    assert resp.request_id.startswith("alpha-")
    status, again = post(server, alpha_body(alpha_candles(arrays)))
    assert status == 200 and again["request_id"] != resp.request_id  # a fresh id per request
    # the same candles as a v1 request: the same answer (features from the one feature engine)
    status, v1 = post(server, predict_body(None, candles=arrays))
    assert status == 200, v1
    for name in ("prob_up", "action", "confidence", "raw_score", "stop_loss", "take_profit", "backend"):
        assert alpha[name] == pytest.approx(v1[name], abs=1e-9), name
    # candles as v1 arrays, newest first: sorted, same answer
    status, arrays_answer = post(server, alpha_body(list(reversed(arrays))))
    assert status == 200 and arrays_answer["prob_up"] == pytest.approx(v1["prob_up"], abs=1e-9)


def test_indicators_naming_every_model_feature_are_used(server: ServerProcess, btc_5m_path: Path) -> None:
    arrays = candles_payload(btc_5m_path, 600)
    older = arrays[:-40]  # the features of another bar than the candles' newest
    cols = ("open_time", "open", "high", "low", "close", "volume")
    row = latest_row({c: [a[i] for a in older] for i, c in enumerate(cols)}, "5m")
    features = {n: row[n] for n in FEATURE_NAMES}
    status, alpha = post(server, alpha_body(alpha_candles(arrays), indicators={**features, "rsi": 55.2}))
    assert status == 200, alpha
    status, v1 = post(server, predict_body(features, candles=arrays))
    assert status == 200 and alpha["prob_up"] == pytest.approx(v1["prob_up"], abs=1e-9)
    status, from_candles = post(server, predict_body(None, candles=arrays))
    assert status == 200 and alpha["prob_up"] != pytest.approx(from_candles["prob_up"], abs=1e-9)
    status, no_candles = post(server, alpha_body([], indicators=features))  # indicators alone suffice
    assert status == 200 and no_candles["prob_up"] == pytest.approx(v1["prob_up"], abs=1e-9)


def test_a_v1_answer_carries_no_alpha_field(server: ServerProcess, btc_5m_path: Path) -> None:
    status, v1 = post(server, predict_body(None, candles=candles_payload(btc_5m_path, 600)))
    assert status == 200 and set(v1) == set(PredictResponse.model_fields)


def test_malformed_alpha_bodies_get_422(server: ServerProcess, btc_5m_path: Path) -> None:
    good = alpha_candles(candles_payload(btc_5m_path, 600))
    bad_bodies: list[Any] = [
        alpha_body([{**good[0], "open": "high"}, *good[1:]]),  # a price that is not a number
        alpha_body([{k: v for k, v in c.items() if k != "close"} for c in good]),  # no close
        alpha_body(good, timeframe="5x"),  # not an interval
        alpha_body(good, symbol="btc usdt"),  # not a symbol
        alpha_body(good, indicatorz={}),  # a misspelt key is refused, never dropped
        alpha_body(good, meta=["not", "an", "object"]),
        alpha_body("not a list"),
        alpha_body([]),  # neither candles nor indicators naming the features
        alpha_body(good[-20:]),  # too few candles for the features
        alpha_body([[1, 2, 3]]),
        {"symbol": "BTCUSDT", "candles": good},  # no timeframe
    ]
    for body in bad_bodies:
        status, out = post(server, body)
        assert status == 422, (str(body)[:200], out)
    status, out = post(server, alpha_body(good, timeframe="1h"))  # a timeframe the model does not serve
    assert status == 409, out
    # a v1 body with a typo still gets v1's own error list
    status, out = post(server, predict_body(None, candles=candles_payload(btc_5m_path, 600), featurs={}))
    assert status == 422 and out["detail"][0]["loc"] == ["featurs"], out


def test_the_alpha_models_env_loads(
    model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env_file = tmp_path / "models.env"
    env_file.write_text(alpha_models_env(model_dir / "model.txt"))
    os.environ["XYLEN_MODEL_TOKEN"] = "t-alpha-1"  # SERVER_HOST=0.0.0.0 needs a token (removed by clean_env)
    with caplog.at_level(logging.INFO, logger="model_server.settings"):
        settings = load_settings(env_file)
    assert (settings.host, settings.port, settings.model_type) == ("0.0.0.0", 8000, "lightgbm")
    assert settings.model_path == model_dir and settings.watch_dir == model_dir.parent
    assert settings.retrain_min_samples == 1500  # FULL_RETRAIN_MIN_SAMPLES (beats MIN_SAMPLES_FOR_RETRAIN)
    assert settings.min_free_memory_mb == pytest.approx(1.2 * 1024)
    assert (settings.lgbm_num_threads, settings.lgbm_max_memory_gb) == (4, 6.0)
    assert (settings.rate_limit_per_second, settings.rate_limit_burst) == (10.0, 50)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    text = warnings[0].getMessage()
    for ignored in ("BINANCE_API_SECRET", "FEATURE_SCALER_PATH", "PROMETHEUS_PORT", "API_KEY", "LOG_FORMAT"):
        assert ignored in text
    for mapped in ("SERVER_PORT", "FULL_RETRAIN_MIN_SAMPLES", "RETRAIN_MIN_FREE_MEMORY_GB"):
        assert mapped not in text
    logged = caplog.text
    assert "alpha-binance-secret-7c4a" not in logged and "alpha-api-key-93ab" not in logged


def test_alpha_keys_yield_to_v1_keys_and_api_key_auth_maps_to_the_token(
    model_dir: Path, tmp_path: Path
) -> None:
    env_file = tmp_path / "models.env"
    env_file.write_text(
        f"MODEL_PATH={model_dir}\nSERVER_PORT=8000\nPORT=8123\nENABLE_API_KEY_AUTH=true\n"
        "API_KEY=alpha-key-55\nSERVER_HOST=0.0.0.0\nRATE_LIMIT_ENABLED=false\n"
        "RATE_LIMIT_REQUESTS_PER_MINUTE=60\nONNX_ENABLED=true\nMODEL_NAME=alpha-name\n"
    )
    settings = load_settings(env_file)
    assert settings.port == 8123 and settings.token == "alpha-key-55" and settings.rate_limit_per_second == 0
    assert settings.model_type == "onnx" and settings.model_id == "alpha-name"


def test_model_path_to_a_txt_file(model_dir: Path, tmp_path: Path) -> None:
    assert load_settings(model_path=model_dir / "model.txt").model_path == model_dir
    lone = tmp_path / "alpha"
    lone.mkdir()
    (lone / "trading_model.txt").write_bytes((model_dir / "model.txt").read_bytes())
    with pytest.raises(ConfigError) as info:
        load_settings(model_path=lone / "trading_model.txt")
    message = str(info.value)
    assert info.value.key == "MODEL_PATH" and "metadata.json" in message and "xylen train" in message
    (lone / "metadata.json").write_bytes((model_dir / "metadata.json").read_bytes())
    with pytest.raises(ConfigError, match=r"model\.txt"):  # the server loads <dir>/model.txt only
        load_settings(model_path=lone / "trading_model.txt")


def test_command_line_exits_2_naming_the_missing_metadata(model_dir: Path, tmp_path: Path) -> None:
    lone = tmp_path / "model.txt"
    lone.write_bytes((model_dir / "model.txt").read_bytes())
    env = {k: v for k, v in os.environ.items() if k not in {"PORT", "HOST", "MODEL_PATH"}}
    done = subprocess.run(
        [sys.executable, "-m", "model_server", "--model", str(lone)],
        capture_output=True, text=True, timeout=60, cwd=REPO, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "MODEL_PATH" in lines[0] and "metadata.json" in lines[0], done.stderr
