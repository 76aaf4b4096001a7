"""The dashboard feed over real sockets: aiohttp WebSocket clients and HTTP against a bound server.

The history comes from :class:`MemoryHistory`, a FAKE at the seam (the coordinator's journal
implements :class:`HistoryProvider` in production).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from pydantic import BaseModel

from coordinator.ensemble.types import Action, Decision, HoldReason, WeightedVote
from coordinator.feed_models import (
    SERVER_MESSAGE,
    BeatMessage,
    ControlAnswer,
    DecisionView,
    EquityPoint,
    LogLine,
    LogMessage,
    ModelStatusView,
    PongMessage,
    PositionRow,
    RiskMessage,
    SnapshotMessage,
    TradeView,
)
from coordinator.ws_server import DashboardLogHandler, DashboardServer
from xylen.config.secrets import load_secrets

TOKEN = "dash-token-7f3a9c"
TIMEOUT = aiohttp.ClientTimeout(total=10)


class MemoryHistory:
    """FAKE at the seam: an in-memory :class:`HistoryProvider`."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.trades = [trade(i) for i in range(5)]
        self.decisions = [DecisionView.from_decision(decision(1_000 + i)) for i in range(4)]
        self.equity = [EquityPoint(ts=1_000 * i, equity_usd=10_000 + i) for i in range(10)]

    async def trades_since(self, since_ms: int, limit: int) -> Sequence[TradeView]:
        if self.fail:
            raise RuntimeError("journal unavailable")
        return [t for t in self.trades if t.opened_ms >= since_ms][:limit]

    async def recent_decisions(self, limit: int) -> Sequence[DecisionView]:
        return self.decisions[-limit:]

    async def equity_since(self, since_ms: int, limit: int) -> Sequence[EquityPoint]:
        return [p for p in self.equity if p.ts >= since_ms][:limit]


def trade(i: int) -> TradeView:
    return TradeView(
        trade_id=f"t{i}",
        symbol="BTCUSDT",
        side="LONG",
        quantity=0.01,
        entry_price=42_000 + i,
        opened_ms=1_000 * i,
    )


def decision(ts: int) -> Decision:
    return Decision(
        timestamp_ms=ts,
        action=Action.HOLD,
        probability=0.51,
        confidence=0.51,
        expected_value_bps=math.nan,
        size_fraction=0.0,
        stop_loss=None,
        take_profit=None,
        votes=(WeightedVote("a", 0.52, 0.51, 1.0),),
        reasons=(HoldReason.LOW_EDGE,),
        disagreement=0.0,
    )


def beat(ts: int, log: str = "beat done", pad: int = 0) -> BeatMessage:
    return BeatMessage(
        ts=ts,
        positions=[PositionRow(symbol="BTCUSDT", side="LONG", quantity=0.01, entry_price=42_000.0)],
        decisions=[DecisionView.from_decision(decision(ts))],
        models=[ModelStatusView(server_id="a", up=True, status="ok", latency_ms=1.2, model_version="v1")],
        equity=[EquityPoint(ts=ts, equity_usd=10_000.0)],
        logs=[LogLine(ts=ts, level="INFO", logger="coordinator.heartbeat", message=log + "x" * pad)],
        breakers={"daily_loss": False},
    )


@asynccontextmanager
async def running(server: DashboardServer) -> AsyncIterator[str]:
    await server.start("127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        await server.stop()


async def receive(ws: aiohttp.ClientWebSocketResponse[bool]) -> Any:
    msg = await ws.receive(timeout=5)
    assert msg.type is aiohttp.WSMsgType.TEXT, msg
    return SERVER_MESSAGE.validate_json(msg.data)


async def wait_for(predicate: Any, seconds: float = 5.0) -> None:
    end = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < end, "condition not reached"
        await asyncio.sleep(0.01)


def test_snapshot_then_beats_to_every_client_and_ping() -> None:
    async def go() -> None:
        # the clock reads a little after the fake history (the snapshot holds its last two days)
        server = DashboardServer(MemoryHistory(), token=TOKEN, clock_ms=lambda: 20_000)
        await server.load_history()
        async with running(server) as url, aiohttp.ClientSession(timeout=TIMEOUT) as s:
            a = await s.ws_connect(f"{url}/ws?token={TOKEN}")
            b = await s.ws_connect(f"{url}/ws", headers={"Authorization": f"Bearer {TOKEN}"})
            for ws in (a, b):
                snap = await receive(ws)
                assert isinstance(snap, SnapshotMessage)
                assert [t.trade_id for t in snap.trades] == [f"t{i}" for i in range(5)]
                assert len(snap.decisions) == 4 and snap.decisions[0].expected_value_bps is None
                assert len(snap.equity) == 10
            await wait_for(lambda: server.client_count == 2)

            await a.send_str("hello, please trade")  # ignored: the feed is read-only
            await a.send_json({"type": "order", "side": "BUY"})  # ignored
            for ts in (5_000, 6_000):
                server.publish_beat(beat(ts))
            server.publish_log(LogLine(ts=7_000, level="WARNING", logger="x", message="careful"))
            await a.send_str("ping")
            for ws in (a, b):
                got = [await receive(ws) for _ in range(3)]
                assert [type(m) for m in got] == [BeatMessage, BeatMessage, LogMessage]
                assert [m.ts for m in got] == [5_000, 6_000, 7_000]
                assert got[0].decisions[0].reasons == ["LOW_EDGE"]
                assert got[0].models[0].server_id == "a"
            assert isinstance(await receive(a), PongMessage)
            await b.send_json({"type": "ping"})
            assert isinstance(await receive(b), PongMessage)

            # a client joining later gets the state the beats left behind
            c = await s.ws_connect(f"{url}/ws?token={TOKEN}")
            snap = await receive(c)
            assert isinstance(snap, SnapshotMessage)
            assert snap.positions[0].symbol == "BTCUSDT" and snap.breakers == {"daily_loss": False}
            assert [d.timestamp_ms for d in snap.decisions[-2:]] == [5_000, 6_000]
            assert snap.logs[-1].message == "careful"
            for ws in (a, b, c):
                await ws.close()
            await wait_for(lambda: server.client_count == 0)

    asyncio.run(go())


def test_token_required() -> None:
    async def go() -> None:
        server = DashboardServer(MemoryHistory(), token=TOKEN)
        async with running(server) as url, aiohttp.ClientSession(timeout=TIMEOUT) as s:
            for path in ("/ws", "/ws?token=wrong", "/api/trades", "/api/decisions?token=x", "/api/equity"):
                async with s.get(f"{url}{path}") as resp:
                    assert resp.status == 401, path
                    assert await resp.json() == {"error": "unauthorized"}
            async with s.get(f"{url}/api/equity", headers={"Authorization": "Bearer nope"}) as resp:
                assert resp.status == 401
            for bad in ("/ws?token=wrong", "/ws"):  # the upgrade is accepted, then closed with 4401
                ws = await s.ws_connect(f"{url}{bad}")
                msg = await ws.receive(timeout=5)
                assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 4401, msg
                assert msg.extra == "unauthorized"
                assert ws.close_code == 4401

        open_server = DashboardServer(MemoryHistory(), token=None, require_token=False)
        async with running(open_server) as url, aiohttp.ClientSession(timeout=TIMEOUT) as s:
            ws = await s.ws_connect(f"{url}/ws")
            assert isinstance(await receive(ws), SnapshotMessage)
            await ws.close()

    asyncio.run(go())
    with pytest.raises(ValueError, match="XYLEN_DASHBOARD_TOKEN"):
        DashboardServer(MemoryHistory(), token=None, require_token=True)


def test_history_api() -> None:
    async def go() -> None:
        server = DashboardServer(MemoryHistory(), token=TOKEN)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        async with running(server) as url, aiohttp.ClientSession(timeout=TIMEOUT, headers=auth) as s:

            async def get(path: str) -> tuple[int, Any]:
                async with s.get(f"{url}{path}") as resp:
                    return resp.status, await resp.json()

            status, body = await get("/api/trades?since=2000")
            assert status == 200 and [t["trade_id"] for t in body["trades"]] == ["t2", "t3", "t4"]
            status, body = await get("/api/trades?since=0&limit=2")
            assert [t["trade_id"] for t in body["trades"]] == ["t0", "t1"]
            status, body = await get("/api/decisions?limit=2")
            assert status == 200 and [d["timestamp_ms"] for d in body["decisions"]] == [1_002, 1_003]
            assert body["decisions"][0]["expected_value_bps"] is None  # NaN is never sent as NaN
            status, body = await get(f"/api/equity?since=7000&token={TOKEN}")
            assert status == 200 and [p["ts"] for p in body["equity"]] == [7_000, 8_000, 9_000]
            for bad in ("/api/trades?since=abc", "/api/trades?since=-1", "/api/decisions?limit=0"):
                status, body = await get(bad)
                assert status == 400 and "error" in body, bad

        failing = DashboardServer(MemoryHistory(fail=True), token=TOKEN)
        async with (
            running(failing) as url,
            aiohttp.ClientSession(timeout=TIMEOUT, headers=auth) as s,
            s.get(f"{url}/api/trades") as resp,
        ):
            assert resp.status == 503

    asyncio.run(go())


def test_slow_client_is_dropped_and_never_blocks_the_beat() -> None:
    async def go() -> None:
        server = DashboardServer(MemoryHistory(), token=TOKEN, queue_size=4, send_timeout_s=2.0)
        async with running(server) as url, aiohttp.ClientSession(timeout=TIMEOUT) as s:
            fast = await s.ws_connect(f"{url}/ws?token={TOKEN}", max_msg_size=0)
            slow = await s.ws_connect(f"{url}/ws?token={TOKEN}", max_msg_size=0)  # never read
            await wait_for(lambda: server.client_count == 2)
            received: list[Any] = []

            async def read_fast() -> None:
                while len(received) < 201:
                    received.append(await receive(fast))

            reader = asyncio.create_task(read_fast())
            worst = 0.0
            for i in range(200):
                t0 = time.perf_counter()
                server.publish_beat(beat(10_000 + i, pad=100_000))  # ~100 KB a message, 20 MB in all
                worst = max(worst, time.perf_counter() - t0)
                await asyncio.sleep(0.002)
            await asyncio.wait_for(reader, 10)
            assert worst < 0.05, worst  # publishing is a put_nowait per client
            assert server.client_count == 1  # the slow one is gone, the fast one stayed
            assert isinstance(received[0], SnapshotMessage)
            assert [m.ts for m in received[1:]] == [10_000 + i for i in range(200)]
            # the slow client, reading at last, finds its socket closed by the server
            closed = False
            while not closed:
                msg = await slow.receive(timeout=5)
                closed = msg.type in (
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSED,
                    aiohttp.WSMsgType.ERROR,
                )
            await fast.close()

    asyncio.run(go())


def test_secrets_never_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XYLEN_DASHBOARD_TOKEN", TOKEN)
    monkeypatch.setenv("XYLEN_MODEL_TOKEN", 'model-token-"quoted"-91c2')
    monkeypatch.setenv("BINANCE_API_SECRET", "binance-secret-0b9e2d")
    secrets = load_secrets()
    assert secrets.dashboard_token is not None and secrets.model_token is not None
    raw = [TOKEN, 'model-token-"quoted"-91c2', "binance-secret-0b9e2d"]

    async def go() -> list[str]:
        server = DashboardServer(
            MemoryHistory(),
            token=secrets.dashboard_token,
            redact=[v for v in (secrets.model_token, secrets.binance_api_secret) if v is not None],
        )
        texts: list[str] = []
        log = logging.getLogger("coordinator.tests.leaky")
        log.propagate = False
        handler = DashboardLogHandler(server, asyncio.get_running_loop())
        log.addHandler(handler)
        try:
            async with running(server) as url, aiohttp.ClientSession(timeout=TIMEOUT) as s:
                ws = await s.ws_connect(f"{url}/ws?token={TOKEN}")
                texts.append((await ws.receive(timeout=5)).data)
                server.publish_beat(beat(1, log=f"careless line: {' '.join(raw)}"))
                log.warning("model token is %s, dashboard token is %s", raw[1], TOKEN)
                server.publish_log(LogLine(ts=2, level="INFO", logger="x", message=f"secret {raw[2]}"))
                for _ in range(3):
                    texts.append((await ws.receive(timeout=5)).data)
                for path in ("/api/trades", "/api/decisions", "/api/equity"):
                    async with s.get(f"{url}{path}?token={TOKEN}") as resp:
                        texts.append(await resp.text())
                await ws.close()
        finally:
            log.removeHandler(handler)
        return texts

    texts = asyncio.run(go())
    assert len(texts) == 7
    assert sum("***" in t for t in texts) == 3  # the three leaky lines arrived, scrubbed
    for text in texts:
        for secret in raw:
            assert secret not in text
        assert "model-token-" not in text


def test_payload_models_have_no_secret_fields() -> None:
    seen: set[type[BaseModel]] = set()

    def walk(model: type[BaseModel]) -> None:
        if model in seen:
            return
        seen.add(model)
        for name, f in model.model_fields.items():
            assert not any(w in name.lower() for w in ("token", "secret", "password", "api_key")), name
            assert "SecretStr" not in repr(f.annotation), name
            for arg in _types(f.annotation):
                if isinstance(arg, type) and issubclass(arg, BaseModel):
                    walk(arg)

    for message in (SnapshotMessage, BeatMessage, LogMessage, PongMessage, RiskMessage, ControlAnswer):
        walk(message)
    assert "SecretStr" not in {m.__name__ for m in seen} and len(seen) >= 20  # every feed model walked


def _types(annotation: Any) -> list[Any]:
    args = getattr(annotation, "__args__", ())
    return [annotation, *[t for a in args for t in _types(a)]]
