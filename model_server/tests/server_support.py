"""Helpers for the model-server tests: real model directories and a real server process.

Models are trained here directly with LightGBM on :func:`xylen.features.compute_features` of the
shipped BTC 5m candles, converted with ``onnxmltools.convert_lightgbm`` and written as a model
directory (``model.txt``, ``model.onnx``, ``metadata.json``), independent of ``xylen train``.
"""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pandas as pd

from xylen.contract import ModelMetadata
from xylen.data.importers import read_freqtrade_feather
from xylen.features import FEATURE_NAMES, FEATURE_VERSION, compute_features

REPO = Path(__file__).resolve().parents[2]
TOKEN = "test-token-5b0e"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
HORIZON = 12


@functools.lru_cache(maxsize=2)
def dataset(path: Path, rows: int = 8000) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
    """(features X by name, labels y: close higher HORIZON bars later, the candle tail used)."""
    candles = read_freqtrade_feather(path).tail(rows + 300).reset_index(drop=True)
    feats = compute_features(candles)
    close = candles["close"].to_numpy()
    up = (np.roll(close, -HORIZON) > close).astype(np.int8)
    keep = slice(300, len(candles) - HORIZON)
    x = feats[list(FEATURE_NAMES)].iloc[keep].reset_index(drop=True).astype(np.float32)
    return x, up[keep], candles


def feature_rows(path: Path, n: int = 64) -> list[dict[str, float]]:
    """``n`` real, distinct feature rows (the newest ones) as dicts."""
    x, _, _ = dataset(path)
    return [{k: float(v) for k, v in row.items()} for row in x.tail(n).to_dict("records")]


def train_booster(
    path: Path, rounds: int = 60, seed: int = 0, constant: bool = False, threads: int = 1
) -> Any:
    import lightgbm as lgb

    x, y, _ = dataset(path)
    labels = np.ones_like(y) if constant else y
    params = {
        "objective": "binary",
        "num_leaves": 15,
        "learning_rate": 0.05,
        "min_data_in_leaf": 50,
        "seed": seed,
        "verbose": -1,
        "num_threads": threads,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
    }
    return lgb.train(params, lgb.Dataset(x, labels), rounds)


def metadata(
    version: str, feature_version: str = FEATURE_VERSION, names: list[str] | None = None
) -> ModelMetadata:
    return ModelMetadata(
        model_version=version,
        created_at=1_706_745_600_000,
        feature_version=feature_version,
        feature_names=list(names or FEATURE_NAMES),
        horizon_bars=HORIZON,
        stop_atr_multiple=1.5,
        take_profit_atr_multiple=2.5,
        train_start=1_700_000_000_000,
        train_end=1_706_745_600_000,
    )


def to_onnx_bytes(booster: Any) -> bytes:
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    onx = onnxmltools.convert_lightgbm(
        booster,
        initial_types=[("input", FloatTensorType([None, booster.num_feature()]))],
        zipmap=False,
        target_opset=15,
    )
    data: bytes = onx.SerializeToString()
    return data


def write_model_dir(
    folder: Path, booster: Any, version: str, *, feature_version: str = FEATURE_VERSION, onnx: bool = True
) -> Path:
    """A complete model directory, assembled in a dot-directory then renamed (as a trainer should)."""
    tmp = folder.parent / f".tmp-{folder.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    booster.save_model(str(tmp / "model.txt"))
    if onnx:
        (tmp / "model.onnx").write_bytes(to_onnx_bytes(booster))
    (tmp / "metadata.json").write_text(metadata(version, feature_version).model_dump_json(indent=2))
    tmp.rename(folder)
    return folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ServerProcess:
    """A ``python -m model_server`` child process on 127.0.0.1."""

    proc: subprocess.Popen[bytes]
    port: int
    home: Path
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait(5)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def start_server(
    home: Path, env: dict[str, str] | None = None, args: list[str] | None = None, port: int | None = None
) -> ServerProcess:
    """Start the server process and wait (20 s at most) until ``/health`` answers.

    ``port``: a given port (to restart a server where it was; each start logs to its own file),
    else a free one.
    """
    port = free_port() if port is None else port
    full_env = {k: v for k, v in os.environ.items() if k not in {"HOST", "PORT", "MODEL_PATH", "MODEL_TYPE"}}
    full_env.update(
        {
            "XYLEN_MODEL_TOKEN": TOKEN,
            "WATCH_INTERVAL_S": "0.2",
            "PYTHONPATH": str(REPO),
            "XYLEN_HOME": str(home),
        }
    )
    full_env.update(env or {})
    log = home / f"server-{port}-{time.monotonic_ns()}.log"
    home.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "model_server",
                "--port",
                str(port),
                "--log-format",
                "text",
                *(args or []),
            ],
            cwd=REPO,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = ServerProcess(proc, port, home, log)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{server.output()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                pass
            if asyncio.run(_healthy(server.url)):
                return server
        except OSError:
            pass
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"server did not become healthy:\n{server.output()}")


async def _healthy(url: str) -> bool:
    timeout = aiohttp.ClientTimeout(total=2)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.get(f"{url}/health") as resp:
        return resp.status == 200


def predict_body(features: dict[str, float] | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "request_id": "req-1",
        "symbol": "BTCUSDT",
        "timeframe": "5m",
        "timestamp": 1_706_745_599_999,
        "feature_version": FEATURE_VERSION,
    }
    if features is not None:
        body["features"] = features
    body.update(extra)
    return body


def candles_payload(path: Path, n: int = 600) -> list[list[float]]:
    """The newest ``n`` candles of the test data set as wire arrays."""
    _, _, candles = dataset(path)
    tail = candles.tail(n)
    cols = ["open_time", "open", "high", "low", "close", "volume"]
    return [[int(r[0]), *map(float, r[1:])] for r in tail[cols].itertuples(index=False, name=None)]
