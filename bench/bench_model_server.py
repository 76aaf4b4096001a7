"""Benchmark of the model server: in-process inference and HTTP ``/predict`` through a real server.

Run: ``python bench/bench_model_server.py [--requests N] [--seconds S] [--backends lightgbm,onnx]``.

A 300-tree LightGBM model (binary, 31 leaves, 2 threads) is trained here on the 42 features of
the shipped BTCUSDT 5m candles (``--data`` or ``$XYLEN_SHARED_DATA``, default ``../shared/data``),
converted to ONNX with onnxmltools and written as a model directory in a temporary home.

Printed:

* in-process single-row latency (median and p99, microseconds) of ``predict_one`` on a feature
  dict, for the LightGBM and ONNX predictors;
* per backend, a server started as a separate process (``python -m model_server``: uvicorn,
  uvloop, httptools, one worker) and driven by one keep-alive aiohttp client on uvloop in this
  process: ``/predict`` p50/p99 at concurrency 1 (``--requests`` sequential calls) and p50/p99 and
  requests per second at concurrency 16 (``--seconds`` of load), for a features-only body and for
  features plus 100 candles; then the server's RSS after the load.

Goals (2-core machine, client on the same machine): HTTP p50 < 1 ms at concurrency 1,
>= 2,000 requests per second at concurrency 16, RSS < 250 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from model_server.predictors import LightGBMPredictor, OnnxPredictor, Predictor  # noqa: E402
from xylen.features import FEATURE_VERSION  # noqa: E402
from xylen.paths import SHARED_BTC_5M, shared_data_dir  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
from bench_models import request_rows, training_set, write_model_dir  # noqa: E402

TOKEN = "bench-token"


def build_model(
    candle_file: Path, folder: Path, rows: int
) -> tuple[list[dict[str, float]], list[list[float]]]:
    """Train the 300-tree model, write the model directory; returns feature rows and candles."""
    import lightgbm as lgb

    candles, x, labels = training_set(candle_file, rows)
    started = time.perf_counter()
    params = {"objective": "binary", "num_leaves": 31, "learning_rate": 0.03, "num_threads": 2, "verbose": -1}
    booster = lgb.train(params, lgb.Dataset(x, labels), num_boost_round=300)
    print(
        f"trained 300 trees on {len(x)} rows x {x.shape[1]} features in {time.perf_counter() - started:.1f} s"
    )
    write_model_dir(folder, booster, candles, "bench-300", onnx=True)
    return request_rows(x, candles, 512, 100)


def in_process(predictor: Predictor, rows: list[dict[str, float]], n: int) -> tuple[float, float]:
    """Median and p99 microseconds of ``predict_one`` on a feature dict."""
    for row in rows[:200]:
        predictor.predict_one(row)
    times = []
    for i in range(n):
        row = rows[i % len(rows)]
        start = time.perf_counter()
        predictor.predict_one(row)
        times.append((time.perf_counter() - start) * 1e6)
    return statistics.median(times), float(np.percentile(times, 99))


def start_server(home: Path, backend: str) -> tuple[subprocess.Popen[bytes], int]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    env = {k: v for k, v in os.environ.items() if k not in {"HOST", "PORT", "MODEL_PATH"}}
    env.update(
        {"XYLEN_MODEL_TOKEN": TOKEN, "MODEL_TYPE": backend, "XYLEN_HOME": str(home), "PYTHONPATH": str(REPO)}
    )
    cmd = [sys.executable, "-m", "model_server", "--port", str(port), "--log-level", "WARNING"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("server did not start within 30 s")


def body_bytes(rows: list[dict[str, float]], candles: list[list[float]] | None) -> list[bytes]:
    import orjson

    out = []
    for i, row in enumerate(rows):
        body: dict[str, Any] = {
            "request_id": f"bench-{i}",
            "symbol": "BTCUSDT",
            "timeframe": "5m",
            "timestamp": 1_706_745_599_999,
            "features": row,
            "feature_version": FEATURE_VERSION,
        }
        if candles is not None:
            body["candles"] = candles
        out.append(orjson.dumps(body))
    return out


async def http_load(
    url: str, bodies: list[bytes], concurrency: int, requests: int, seconds: float
) -> dict[str, float]:
    """p50/p99 (ms) and requests per second of ``/predict`` with ``concurrency`` keep-alive clients."""
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=10)
    latencies: list[float] = []
    failures = 0
    async with aiohttp.ClientSession(connector=connector, headers=headers, timeout=timeout) as session:

        async def post(body: bytes) -> None:
            nonlocal failures
            start = time.perf_counter()
            async with session.post(url, data=body) as resp:
                await resp.read()
                if resp.status != 200:
                    failures += 1
            latencies.append((time.perf_counter() - start) * 1000)

        for body in bodies[:300]:  # warm-up: connections, caches
            await post(body)
        latencies.clear()
        started = time.perf_counter()
        if concurrency == 1:
            for i in range(requests):
                await post(bodies[i % len(bodies)])
        else:
            stop = started + seconds

            async def worker(k: int) -> None:
                i = k
                while time.perf_counter() < stop:
                    await post(bodies[i % len(bodies)])
                    i += concurrency

            await asyncio.gather(*(worker(k) for k in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {
        "p50": statistics.median(latencies),
        "p99": float(np.percentile(latencies, 99)),
        "rps": len(latencies) / elapsed,
        "failures": float(failures),
    }


def run_backend(
    home: Path, backend: str, rows: list[dict[str, float]], candles: list[list[float]], args: Any
) -> None:
    proc, port = start_server(home, backend)
    url = f"http://127.0.0.1:{port}/predict"
    try:
        loop_runner = _runner()
        print(f"\nHTTP /predict, server backend {backend} (separate process, 1 worker)")
        print(f"  {'body':<22} {'conc':>4} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'failed':>6}")
        for label, with_candles in (("features", False), ("features+100 candles", True)):
            bodies = body_bytes(rows, candles if with_candles else None)
            for conc in (1, 16):
                r = loop_runner(http_load(url, bodies, conc, args.requests, args.seconds))
                cells = f"{r['p50']:>8.3f} {r['p99']:>8.3f} {r['rps']:>8.0f} {r['failures']:>6.0f}"
                print(f"  {label:<22} {conc:>4} {cells}")
        rss = psutil.Process(proc.pid).memory_info().rss / 2**20
        print(f"  server RSS after the load: {rss:.0f} MB")
    finally:
        proc.terminate()
        proc.wait(10)


def _runner() -> Any:
    try:
        import uvloop

        return uvloop.run
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        return asyncio.run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", default=None, help="shared data folder (default $XYLEN_SHARED_DATA)")
    parser.add_argument("--rows", type=int, default=60_000, help="5m candles to train on (default 60000)")
    parser.add_argument("--requests", type=int, default=3000, help="sequential requests at concurrency 1")
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds of load at concurrency 16")
    parser.add_argument("--backends", default="lightgbm,onnx", help="server backends to load-test")
    args = parser.parse_args()
    candle_file = shared_data_dir(args.data) / SHARED_BTC_5M
    if not candle_file.is_file():
        raise SystemExit(f"{candle_file} not found (set --data or XYLEN_SHARED_DATA)")
    home = Path(tempfile.mkdtemp(prefix="xylen-bench-ms-"))
    try:
        rows, candles = build_model(candle_file, home / "models" / "bench-300", args.rows)
        print("\nin-process predict_one (feature dict -> probability), 1 thread")
        for predictor in (
            LightGBMPredictor.load(home / "models" / "bench-300"),
            OnnxPredictor.load(home / "models" / "bench-300"),
        ):
            median, p99 = in_process(predictor, rows, 20_000)
            print(f"  {predictor.backend:<9} median {median:7.1f} us   p99 {p99:7.1f} us")
        for backend in args.backends.split(","):
            run_backend(home, backend.strip(), rows, candles, args)
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
