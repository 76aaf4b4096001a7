"""Benchmark of the coordinator's model fan-out: ``ModelClients.predict_all`` to N real model servers.

Run: ``python bench/bench_fanout.py [--servers 3,10] [--beats 200] [--candles 100] [--loop uvloop|asyncio]``.

A small LightGBM model (60 trees, 15 leaves) is trained on the 42 features of the shipped BTCUSDT 5m
candles (``--data`` or ``$XYLEN_SHARED_DATA``, default ``../shared/data``) and written as a model
directory (``model.txt``, ``metadata.json``; the servers use the LightGBM backend).  For
each N, N ``python -m model_server`` processes (uvicorn, uvloop, httptools, one worker each) are
started on 127.0.0.1 and one ``ModelClients`` (one aiohttp session, keep-alive) runs ``--beats``
sequential beats, each a parallel ``/predict`` to all N with a 20 s deadline, on a body of one feature
row plus ``--candles`` candles.  10 warm-up beats are not counted.

Printed per N: fan-out p50 / p99 / max in milliseconds (the wall time of ``predict_all``, request
serialization to the last vote parsed), the slowest single server's p99, and the count of beats
with a missing vote.  Goal (issue): the whole beat p99 < 50 ms with 10 servers; the fan-out is the
part of it measured here.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from coordinator.model_client import ModelClients, VoteStatus  # noqa: E402
from xylen.config.schema import ModelServerConfig  # noqa: E402
from xylen.contract import PredictRequest  # noqa: E402
from xylen.features import FEATURE_VERSION  # noqa: E402
from xylen.paths import SHARED_BTC_5M, shared_data_dir  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
from bench_models import request_rows, training_set, write_model_dir  # noqa: E402

WARMUP_BEATS = 10
TOKEN = "bench-token-fanout"


@dataclass
class Server:
    """One ``python -m model_server`` child process."""

    proc: subprocess.Popen[bytes]
    url: str

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def build_model(
    candle_file: Path, folder: Path, candle_count: int
) -> tuple[list[dict[str, float]], list[list[float]]]:
    """Train 60 trees on 8,000 rows and write the model directory; returns feature rows and candles."""
    import lightgbm as lgb

    candles, x, labels = training_set(candle_file, 8_000)
    params = {"objective": "binary", "num_leaves": 15, "learning_rate": 0.05, "num_threads": 1, "verbose": -1}
    booster = lgb.train(params, lgb.Dataset(x, labels), num_boost_round=60)
    write_model_dir(folder, booster, candles, "bench-fanout")
    return request_rows(x, candles, 256, candle_count)


def start_server(model_dir: Path, home: Path) -> Server:
    """One server process on a free port; waits (30 s at most) until ``/health`` answers 200."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    home.mkdir(parents=True)
    shutil.copytree(model_dir, home / "models" / model_dir.name)
    env = {k: v for k, v in os.environ.items() if k not in {"HOST", "PORT", "MODEL_PATH", "MODEL_TYPE"}}
    env.update(
        {
            "XYLEN_MODEL_TOKEN": TOKEN,
            "XYLEN_HOME": str(home),
            "PYTHONPATH": str(REPO),
            "TRAINING_INTERVAL": "0",
        }
    )
    cmd = [sys.executable, "-m", "model_server", "--port", str(port), "--log-level", "WARNING"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = Server(proc, f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"model server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{server.url}/health", timeout=1) as resp:
                if resp.status == 200:
                    return server
        except OSError:
            time.sleep(0.05)
    server.stop()
    raise SystemExit("model server did not become healthy within 30 s")


def start_servers(root: Path, model_dir: Path, n: int) -> list[Server]:
    """``n`` model server processes, each with its own home holding the model, started in parallel."""
    homes = [root / f"home-{n}-{i}" for i in range(n)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda h: start_server(model_dir, h), homes))


def requests(rows: list[dict[str, float]], candles: list[list[float]], beats: int) -> list[PredictRequest]:
    """One request per beat, each with a distinct real feature row."""
    return [
        PredictRequest.model_validate(
            {
                "request_id": f"bench-{i}",
                "symbol": "BTCUSDT",
                "timeframe": "5m",
                "timestamp": 1_706_745_599_999 + i * 300_000,
                "candles": candles,
                "features": rows[i % len(rows)],
                "feature_version": FEATURE_VERSION,
            }
        )
        for i in range(beats)
    ]


async def run_beats(urls: list[str], reqs: list[PredictRequest]) -> dict[str, Any]:
    """Time ``predict_all`` over every request; per-server latencies as the client measured them."""
    configs = [ModelServerConfig(id=f"s{i}", url=url, timeout_ms=5000) for i, url in enumerate(urls)]
    totals: list[float] = []
    per_server: dict[str, list[float]] = {c.id: [] for c in configs}
    missing = 0
    async with ModelClients(configs, TOKEN, limit_per_host=4) as clients:
        for i, req in enumerate(reqs):
            fan = await clients.predict_all(req, 20.0)
            if i < WARMUP_BEATS:
                continue
            totals.append(fan.duration_s * 1000)
            missing += len(fan.results) != fan.count(VoteStatus.OK)
            for r in fan.results:
                per_server[r.server_id].append(r.latency_ms)
    worst_server_p99 = max(float(np.percentile(v, 99)) for v in per_server.values())
    return {
        "p50": statistics.median(totals),
        "p99": float(np.percentile(totals, 99)),
        "max": max(totals),
        "server_p99": worst_server_p99,
        "missing": missing,
        "beats": len(totals),
    }


def _runner(loop: str) -> tuple[str, Callable[[Coroutine[Any, Any, dict[str, Any]]], dict[str, Any]]]:
    if loop == "asyncio":
        return "asyncio", asyncio.run
    try:
        import uvloop

        return "uvloop", uvloop.run
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        return "asyncio", asyncio.run


def main() -> None:
    """Parse arguments, build the model, run each server count, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", default=None, help="shared data folder (default $XYLEN_SHARED_DATA)")
    parser.add_argument("--servers", default="3,10", help="server counts to measure (default 3,10)")
    parser.add_argument("--beats", type=int, default=200, help="beats per server count (default 200)")
    parser.add_argument("--candles", type=int, default=100, help="candles in each request (default 100)")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop", help="client event loop")
    args = parser.parse_args()
    candle_file = shared_data_dir(args.data) / SHARED_BTC_5M
    if not candle_file.is_file():
        raise SystemExit(f"{candle_file} not found (set --data or XYLEN_SHARED_DATA)")
    loop_name, run = _runner(args.loop)
    started = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="xylen-bench-fanout-"))
    model_dir = root / "model" / "v1"
    rows, candles = build_model(candle_file, model_dir, args.candles)
    reqs = requests(rows, candles, args.beats + WARMUP_BEATS)
    print(
        f"model trained in {time.perf_counter() - started:.1f} s; "
        f"client loop {loop_name}; {os.cpu_count()} CPUs"
    )
    print(
        f"{args.beats} beats each (after {WARMUP_BEATS} warm-up), "
        f"1 feature row + {args.candles} candles a request"
    )
    try:
        for n in (int(x) for x in args.servers.split(",")):
            servers = start_servers(root, model_dir, n)
            try:
                figures = run(run_beats([s.url for s in servers], reqs))
            finally:
                for s in servers:
                    s.stop()
            print(
                f"  {n:>2} servers: fan-out p50 {figures['p50']:6.2f} ms  p99 {figures['p99']:6.2f} ms  "
                f"max {figures['max']:6.2f} ms  slowest server p99 {figures['server_p99']:6.2f} ms  "
                f"beats missing a vote {figures['missing']}/{figures['beats']}"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
