"""The coordinator end to end: real paper exchange, two real model server processes, the real app.

In-process: :class:`CoordinatorApp` with the instant clock runs N beats while the test steps the
paper exchange's replay one candle per beat (so the coordinator and the venue agree on the time).
As a process: ``python -m coordinator --config CFG`` against the same kind of venue running at
300x, stopped by SIGTERM; a bad config exits 2; SIGHUP with a bad config keeps the old one.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from coordinator.app import CoordinatorApp
from coordinator.exchange import BinanceFuturesClient
from coordinator.heartbeat import BeatReport
from coordinator.tests.heartbeat_support import (
    KEY,
    SECRET,
    STEP_MS,
    SYMBOL,
    coordinator_config,
    model_servers,
    paper_venue,
    venue_service,
    write_config,
)
from coordinator.tests.test_exchange_support import candles  # noqa: F401 - fixture
from model_server.tests.server_support import TOKEN, ServerProcess
from xylen.config import parse_config
from xylen.config.schema import ExchangeConfig
from xylen.config.secrets import Secrets
from xylen.paths import Home

REPO = Path(__file__).resolve().parents[2]
BEATS = 8


@pytest.fixture(scope="module")
def servers(btc_5m_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServerProcess]]:
    with model_servers(btc_5m_path, tmp_path_factory.mktemp("servers")) as procs:
        yield procs


def _secrets() -> Secrets:
    return Secrets(paper_api_key=KEY, paper_api_secret=SECRET, model_token=TOKEN)  # type: ignore[arg-type]


async def _exchange_open_ids(url: str) -> tuple[set[str], dict[str, str]]:
    config = ExchangeConfig(paper_url=url)
    client = await BinanceFuturesClient.create(config, _secrets())
    try:
        orders = await client.get_open_orders(SYMBOL)
        algos = await client.get_open_algo_orders(SYMBOL)
        positions = await client.get_open_positions(SYMBOL)
    finally:
        await client.close()
    ids = {o.clientOrderId for o in orders} | {a.clientAlgoId for a in algos}
    return ids, {p.symbol: str(p.positionAmt) for p in positions if p.positionAmt != 0}


def test_app_in_process_trades_logs_every_beat_and_survives_a_dead_model_server(
    candles: Path,  # noqa: F811 - fixture
    btc_5m_path: Path,
    tmp_path: Path,
    servers: list[ServerProcess],
) -> None:
    service = venue_service(candles, tmp_path)
    with model_servers(btc_5m_path, tmp_path / "extra", count=1) as (victim,):

        async def scenario() -> None:
            async with paper_venue(service) as url:
                data = coordinator_config(url, [*servers, victim])
                config = parse_config(data)
                reports: list[BeatReport] = []

                def on_beat(report: BeatReport) -> None:
                    reports.append(report)
                    if len(reports) == 3:
                        victim.kill9()  # one model server dies mid-run
                    service.step_to(service.now_ms() + STEP_MS)  # the next candle closes

                app = CoordinatorApp(config, Home(tmp_path / "home"), beats=BEATS, secrets=_secrets(),
                                     on_beat=on_beat)  # fmt: skip
                runner = asyncio.create_task(app.run())
                metrics = ""
                while not runner.done():
                    if len(reports) >= 2 and not metrics:
                        port = data["monitoring"]["metrics_port"]
                        async with (
                            aiohttp.ClientSession() as http,
                            http.get(
                                f"http://127.0.0.1:{port}/metrics", timeout=aiohttp.ClientTimeout(total=5)
                            ) as resp,
                        ):
                            metrics = await resp.text()
                    await asyncio.sleep(0.01)
                assert await runner == 0
                assert len(reports) == BEATS
                assert "xylen_beat_duration_seconds_count" in metrics
                count = next(
                    float(line.split()[-1]) for line in metrics.splitlines()
                    if line.startswith("xylen_beat_duration_seconds_count")
                )  # fmt: skip
                assert count >= 1
                assert 'xylen_votes_total{server="ms-0",status="ok"}' in metrics

                # beats went on after the kill, with the two others voting
                for report in reports[4:]:
                    fanout = report.symbols[SYMBOL].fanout
                    assert {v.model_id for v in fanout.votes} == {"ms-0", "ms-1"}
                    assert fanout.result("ms-2").status.value in {"error", "backoff", "timeout"}
                placed = [r.symbols[SYMBOL].placement for r in reports if r.symbols[SYMBOL].placement]
                assert placed, [(r.symbols[SYMBOL].decision.action, r.symbols[SYMBOL].note) for r in reports]
                assert not placed[0].rejected, placed[0].reason

                # every beat in the journal: snapshot, three predictions each, a decision
                conn = sqlite3.connect(tmp_path / "home" / "xylen.db")
                try:
                    beat_ids = [r.symbols[SYMBOL].beat_id for r in reports]
                    for beat_id in beat_ids:
                        assert (
                            conn.execute(
                                "SELECT COUNT(*) FROM snapshots WHERE beat_id=?", (beat_id,)
                            ).fetchone()[0]
                            == 1
                        )
                        assert (
                            conn.execute(
                                "SELECT COUNT(*) FROM decisions WHERE beat_id=?", (beat_id,)
                            ).fetchone()[0]
                            == 1
                        )
                        assert (
                            conn.execute(
                                "SELECT COUNT(*) FROM model_predictions WHERE beat_id=?", (beat_id,)
                            ).fetchone()[0]
                            == 3
                        )
                    late = conn.execute(
                        "SELECT status FROM model_predictions WHERE beat_id=? AND model_id='ms-2'",
                        (beat_ids[-1],),
                    ).fetchone()[0]
                    assert late in {"error", "timeout"}
                    assert (
                        conn.execute("SELECT COUNT(*) FROM outcomes").fetchone()[0] >= 1
                    )  # horizon 2 candles
                    ordered = conn.execute(
                        "SELECT client_order_id FROM decisions WHERE client_order_id IS NOT NULL"
                    ).fetchall()
                    assert {r[0] for r in ordered} >= {placed[0].entry.client_order_id}
                    live = {r[0] for r in conn.execute(
                        "SELECT client_order_id FROM orders WHERE state NOT IN"
                        " ('FILLED','CANCELED','EXPIRED','REJECTED','NOT_FOUND')"
                    )}  # fmt: skip
                finally:
                    conn.close()
                # SQLite and the exchange agree: the live orders are exactly the exchange's open ones
                open_ids, positions = await _exchange_open_ids(url)
                assert live == open_ids
                if positions:  # a position open at the end has its stop and take-profit on the exchange
                    assert len(open_ids) == 2

        asyncio.run(scenario())


def _env(home: Path, notify: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"NOTIFY_SOCKET", "WATCHDOG_USEC"}}
    env.update(
        XYLEN_PAPER_API_KEY=KEY, XYLEN_PAPER_API_SECRET=SECRET, XYLEN_MODEL_TOKEN=TOKEN,
        XYLEN_HOME=str(home), PYTHONPATH=str(REPO),
    )  # fmt: skip
    if notify is not None:
        env.update(NOTIFY_SOCKET=str(notify), WATCHDOG_USEC="500000")
    return env


async def _wait_for(log: Path, text: str, proc: asyncio.subprocess.Process, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in log.read_text(errors="replace"):
        assert proc.returncode is None, log.read_text(errors="replace")
        assert time.monotonic() < deadline, f"{text!r} not logged:\n{log.read_text(errors='replace')}"
        await asyncio.sleep(0.05)


def test_process_runs_n_beats_and_exits_0(
    candles: Path,  # noqa: F811 - fixture
    tmp_path: Path,
    servers: list[ServerProcess],
) -> None:
    service = venue_service(candles, tmp_path, speed=300.0)

    async def scenario() -> None:
        async with paper_venue(service) as url:
            config = coordinator_config(url, servers, clock="accelerated", speed=300.0)
            config["logging"] = {"level": "WARNING", "format": "json", "file": "coordinator.jsonl"}
            cfg = write_config(tmp_path / "config.yaml", config)
            log = tmp_path / "coordinator.log"
            with open(log, "wb") as out:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "coordinator", "--log-format", "text",
                    "--config", str(cfg), "--beats", "3",
                    cwd=REPO, env=_env(tmp_path / "home"), stdout=out, stderr=subprocess.STDOUT,
                )  # fmt: skip
                assert await asyncio.wait_for(proc.wait(), 40) == 0, log.read_text()
        # the config's logging section is honoured: level WARNING, a JSON-lines file under the
        # home's logs/; the --log-format flag wins over the file's format for the terminal
        terminal = log.read_text()
        assert " INFO " not in terminal and not terminal.lstrip().startswith("{"), terminal
        records = [json.loads(line) for line in (tmp_path / "home" / "logs" / "coordinator.jsonl").open()]
        assert all(r["level"] in ("WARNING", "ERROR", "CRITICAL") for r in records), records
        conn = sqlite3.connect(tmp_path / "home" / "xylen.db")
        try:
            assert conn.execute("SELECT COUNT(*) FROM decisions").fetchone()[0] == 3
            assert conn.execute("SELECT COUNT(*) FROM model_predictions").fetchone()[0] == 6
        finally:
            conn.close()

    asyncio.run(scenario())


def test_process_sighup_bad_config_kept_sigterm_exits_0_and_notifies_systemd(
    candles: Path,  # noqa: F811 - fixture
    tmp_path: Path,
    servers: list[ServerProcess],
) -> None:
    service = venue_service(candles, tmp_path, speed=300.0)
    notify_path = tmp_path / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.setblocking(False)
    messages: list[str] = []

    async def drain() -> None:  # as systemd does: read every notification as it comes
        while True:
            try:
                messages.append(notify.recv(4096).decode())
            except BlockingIOError:
                await asyncio.sleep(0.02)

    async def scenario() -> None:
        reader = asyncio.create_task(drain())
        async with paper_venue(service) as url:
            data = coordinator_config(url, servers, clock="accelerated", speed=300.0)
            cfg = write_config(tmp_path / "config.yaml", data)
            log = tmp_path / "coordinator.log"
            with open(log, "wb") as out:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "coordinator", "--log-format", "text", "--config", str(cfg),
                    cwd=REPO, env=_env(tmp_path / "home", notify_path), stdout=out, stderr=subprocess.STDOUT,
                )  # fmt: skip
                try:
                    await _wait_for(log, "beat 2:", proc)
                    port = data["monitoring"]["metrics_port"]
                    async with (
                        aiohttp.ClientSession() as http,
                        http.get(
                            f"http://127.0.0.1:{port}/metrics", timeout=aiohttp.ClientTimeout(total=5)
                        ) as resp,
                    ):
                        assert resp.status == 200
                        text = await resp.text()
                    assert 'xylen_votes_total{server="ms-1",status="ok"}' in text
                    cfg.write_text("ensemble:\n  quorum: 0\n")  # invalid: quorum >= 1
                    proc.send_signal(signal.SIGHUP)
                    await _wait_for(log, "config reload refused", proc)
                    await _wait_for(log, "beat 4:", proc)  # still beating on the old config
                    started = time.monotonic()
                    proc.send_signal(signal.SIGTERM)
                    assert await asyncio.wait_for(proc.wait(), 10) == 0, log.read_text()
                    assert time.monotonic() - started < 10
                finally:
                    if proc.returncode is None:
                        proc.kill()
                        await proc.wait()
        await asyncio.sleep(0.1)
        reader.cancel()
        text = log.read_text()
        assert "ensemble.quorum" in text  # the refusal names the key
        assert any(m.startswith("READY=1") for m in messages), messages
        assert "WATCHDOG=1" in messages
        assert messages[-1] == "STOPPING=1", messages

    try:
        asyncio.run(scenario())
    finally:
        notify.close()


def test_bad_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("heartbeat:\n  interval_seconds: 10\n  deadline_seconds: 20\n")
    proc = subprocess.run(
        [sys.executable, "-m", "coordinator", "--config", str(cfg)],
        cwd=REPO, env=_env(tmp_path / "home"), capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "heartbeat.deadline_seconds" in proc.stderr
    via_cli = subprocess.run(
        [sys.executable, "-m", "xylen.cli.main", "run", "--config", str(cfg)],
        cwd=REPO, env=_env(tmp_path / "home"), capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert via_cli.returncode == 2, via_cli.stderr
