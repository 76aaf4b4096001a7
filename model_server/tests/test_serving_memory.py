"""The serving path loads no library it does not use: a real ``python -m model_server`` process.

The server process gets a ``sitecustomize`` (on its ``PYTHONPATH``) that writes the names in
``sys.modules`` to a file on SIGUSR1, so the check looks at the very process that served: after
feature-vector predictions, an outcome stored through ``/retrain`` and a prediction computed from
candles, neither pandas nor scikit-learn nor optuna is loaded, and its private resident memory
stays under 150 MB, for LightGBM and for ONNX (the RSS ``/health`` reports is printed beside it).
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from model_server.tests.server_support import (
    AUTH,
    REPO,
    ServerProcess,
    candles_payload,
    feature_rows,
    predict_body,
    start_server,
    train_booster,
    write_model_dir,
)
from xylen.features import FEATURE_VERSION

UNUSED = ("pandas", "sklearn", "optuna")
PRIVATE_LIMIT_MB = 150.0


def private_resident_mb(pid: int) -> float:
    """The process's own resident memory (``RssAnon + RssShmem``), in MB.

    Its RSS also counts the pages of the shared libraries' files it has mapped, and how many that is
    depends on the page cache (the kernel maps cached neighbours of each faulted page): the same
    server reads about 113 MB on a machine whose cache is cold and up to about 180 MB right after the
    libraries were installed.  The private part is what the process itself costs the host.
    """
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    return sum(int(fields[name].split()[0]) for name in ("RssAnon", "RssShmem")) / 1024


SITECUSTOMIZE = """
import json, os, signal, sys

def _dump(signum, frame):
    with open(os.environ["XYLEN_TEST_MODULES_FILE"] + ".tmp", "w") as out:
        json.dump(sorted(name for name, mod in sys.modules.items() if mod is not None), out)
    os.replace(os.environ["XYLEN_TEST_MODULES_FILE"] + ".tmp", os.environ["XYLEN_TEST_MODULES_FILE"])

signal.signal(signal.SIGUSR1, _dump)
"""


def loaded_modules(server: ServerProcess, out: Path) -> set[str]:
    """The top-level packages loaded in the server process (asked by SIGUSR1)."""
    out.unlink(missing_ok=True)
    server.proc.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while not out.exists():
        assert time.monotonic() < deadline, "the server did not write its module list"
        asyncio.run(get(server.url + "/health"))  # wakes the event loop so the handler runs
        time.sleep(0.05)
    return {name.split(".")[0] for name in json.loads(out.read_text())}


async def get(url: str) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as resp:
        assert resp.status == 200
        body: dict[str, Any] = await resp.json()
        return body


async def post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    timeout = aiohttp.ClientTimeout(total=10)
    async with (
        aiohttp.ClientSession(timeout=timeout, headers=AUTH) as session,
        session.post(url, json=body) as resp,
    ):
        answer: dict[str, Any] = await resp.json()
        return resp.status, answer


@pytest.mark.parametrize("backend", ["lightgbm", "onnx"])
def test_serving_path_never_loads_pandas_sklearn_or_optuna(
    tmp_path: Path, btc_5m_path: Path, backend: str
) -> None:
    home = tmp_path / "home"
    write_model_dir(home / "models" / "v1", train_booster(btc_5m_path, rounds=60), "v1")
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    out = tmp_path / "modules.json"
    env = {
        "MODEL_TYPE": backend,
        "PYTHONPATH": f"{hook}:{REPO}",
        "XYLEN_TEST_MODULES_FILE": str(out),
    }
    rows = feature_rows(btc_5m_path, 8)
    candles = candles_payload(btc_5m_path, 600)
    server = start_server(home, env)
    try:
        for i, row in enumerate(rows):
            status, answer = asyncio.run(post(server.url + "/predict", predict_body(row, request_id=f"r{i}")))
            assert status == 200, answer
            assert answer["backend"] == backend
        outcomes = [
            {"request_id": f"r{i}", "timestamp": 1_706_745_599_999 + i, "features": row, "label": i % 2}
            for i, row in enumerate(rows)
        ]
        status, answer = asyncio.run(
            post(server.url + "/retrain", {"outcomes": outcomes, "feature_version": FEATURE_VERSION})
        )
        assert status == 200, answer
        loaded = loaded_modules(server, out)
        assert "numpy" in loaded and "model_server" in loaded  # the dump sees the server's imports
        assert loaded.isdisjoint(UNUSED), sorted(loaded.intersection(UNUSED))

        status, answer = asyncio.run(post(server.url + "/predict", predict_body(None, candles=candles)))
        assert status == 200, answer
        loaded = loaded_modules(server, out)
        assert "talib" in loaded  # the candle path ran the feature engine
        assert loaded.isdisjoint(UNUSED), sorted(loaded.intersection(UNUSED))

        health = asyncio.run(get(server.url + "/health"))
        private = private_resident_mb(server.proc.pid)
        print(f"{backend}: RSS {health['memory_usage_mb']:.0f} MB, private {private:.0f} MB")
        assert private <= PRIVATE_LIMIT_MB, (private, health)
    finally:
        server.stop()
