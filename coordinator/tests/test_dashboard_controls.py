"""The dashboard's control API on a real coordinator: the paper exchange over HTTP, the real app's
dashboard port on 127.0.0.1, real SQLite.  The only model server is dead, so beats HOLD and every
position here is placed by the test itself.

Checked: who may act (admin token only; the read token gets 403 and never acts; no admin token ->
404), malformed bodies -> 400 naming the key, each action acts (pause refuses entries, resume allows
them, reset-breaker clears a tripped breaker, halt+flatten closes the position on the venue), is a
``control_actions`` row and a WARNING line that reaches WebSocket clients as a ``log`` message, and
an admin token equal to the read token stops the start with a config error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from coordinator.app import ADMIN_TOKEN_ENV, CoordinatorApp, admin_token
from coordinator.feed_models import SERVER_MESSAGE, LogMessage, SnapshotMessage
from coordinator.heartbeat import Heartbeat
from coordinator.risk import MarketView, TradeProposal
from coordinator.risk.breakers import BreakerKind
from coordinator.side import Side
from coordinator.tests.heartbeat_support import (
    KEY,
    SECRET,
    SYMBOL,
    built_heartbeat,
    coordinator_config,
    free_port,
    paper_venue,
    venue_service,
)
from coordinator.tests.test_exchange_support import candles  # noqa: F401 - fixture
from coordinator.tests.test_manager_support import until
from model_server.tests.server_support import TOKEN as MODEL_TOKEN
from xylen.config import parse_config
from xylen.config.secrets import Secrets
from xylen.errors import ConfigError
from xylen.paths import Home

READ = "read-token-5d1f0c2a9b"
ADMIN = "admin-token-e4b7a19c03d2"
TIMEOUT = aiohttp.ClientTimeout(total=30)
CENT = Decimal("0.01")


def _app(url: str, home: Path, port: int, admin: str | None) -> CoordinatorApp:
    data = coordinator_config(url, [], trading=True, dashboard_port=port)
    data["model_servers"] = [{"id": "ms-0", "url": f"http://127.0.0.1:{free_port()}", "timeout_ms": 500}]
    data["dashboard"]["require_token"] = True
    secrets = Secrets(
        paper_api_key=KEY, paper_api_secret=SECRET, model_token=MODEL_TOKEN, dashboard_token=READ
    )
    return CoordinatorApp(parse_config(data), Home(home), secrets=secrets, admin_token=admin)


@contextlib.asynccontextmanager
async def _running(
    tmp_path: Path, service: Any, admin: str | None = ADMIN
) -> AsyncIterator[tuple[CoordinatorApp, Heartbeat, str]]:
    """A built coordinator with its dashboard and its safety loop running; yields its base URL."""
    async with paper_venue(service) as url:
        port = free_port()
        app = _app(url, tmp_path / "home", port, admin)
        async with built_heartbeat(app) as hb:
            assert app.safety is not None
            safety = asyncio.create_task(app.safety.run(), name="safety")
            try:
                yield app, hb, f"http://127.0.0.1:{port}"
            finally:
                safety.cancel()
                await asyncio.gather(safety, return_exceptions=True)


async def _post(
    s: aiohttp.ClientSession, url: str, token: str | None, body: bytes | None = None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with s.post(url, data=body, headers=headers) as resp:
        return resp.status, await resp.json()


def _actions(home: Path) -> list[tuple[str, str, int]]:
    conn = sqlite3.connect(home / "xylen.db")
    try:
        return [tuple(r) for r in conn.execute("SELECT actor, action, ok FROM control_actions ORDER BY id")]
    finally:
        conn.close()


async def _entry_refused_reasons(hb: Heartbeat) -> list[str]:
    """What the risk manager says now to a LONG entry of 0.01 BTC."""
    ex = hb.exchange
    mark = await ex.mark_price(SYMBOL)
    balances, positions = await ex.get_account_balance(), await ex.get_open_positions()
    account = hb._account_view(balances, positions)
    proposal = TradeProposal(
        SYMBOL, Side.BUY, mark, stop_price=(mark * Decimal("0.97")).quantize(CENT), quantity=Decimal("0.01")
    )
    view = MarketView(SYMBOL, mark, mark, hb.clock.now_ms(), ex.client.symbol_rules(SYMBOL))
    result = hb.risk.validate(proposal, account, view, hb.clock.now_ms())
    return [r.value for r in result.reasons]


def test_auth_and_malformed_bodies_never_act(candles: Path, tmp_path: Path) -> None:  # noqa: F811
    service = venue_service(candles, tmp_path)

    async def scenario() -> None:
        async with (
            _running(tmp_path, service) as (app, hb, base),
            aiohttp.ClientSession(timeout=TIMEOUT) as s,
        ):
            control = f"{base}/api/control"
            for token, status in ((None, 401), ("wrong-token-123456", 401), (READ, 403)):
                for action in ("pause", "resume", "halt", "reset-breaker"):
                    got, body = await _post(
                        s, f"{control}/{action}", token, b'{"flatten": true, "confirm": "FLATTEN"}'
                    )
                    assert got == status, (token, action, body)
                    assert READ not in str(body) and ADMIN not in str(body)
            # the token in the query string is not an admin credential
            got, _ = await _post(s, f"{control}/pause?token={ADMIN}", None)
            assert got == 401
            bad = [
                ("halt", b"{not json"),
                ("halt", b"[]"),
                ("halt", b'{"flatten": "yes"}'),
                ("halt", b'{"flatten": true}'),  # no typed confirmation
                ("halt", b'{"flatten": true, "confirm": "flatten"}'),
                ("halt", b'{"flatten": false, "extra": 1}'),
                ("reset-breaker", b"{}"),
                ("reset-breaker", b'{"name": 7}'),
                ("pause", b'{"why": "x"}'),
                ("pause", b"x" * 20_000),
            ]
            for action, body in bad:
                got, answer = await _post(s, f"{control}/{action}", ADMIN, body)
                assert got == 400, (action, body[:40], answer)
                assert isinstance(answer["error"], str) and answer["error"]
            got, answer = await _post(s, f"{control}/halt", ADMIN, b'{"flatten": true}')
            assert "confirm" in answer["error"]
            got, answer = await _post(s, f"{control}/reset-breaker", ADMIN, b'{"name": "nope"}')
            assert got == 404 and "nope" in answer["error"]
            got, _ = await _post(s, f"{control}/launch-missiles", ADMIN, b"{}")
            assert got == 404
            async with s.get(f"{control}/pause", headers={"Authorization": f"Bearer {ADMIN}"}) as resp:
                assert resp.status in (404, 405)
            # nothing acted
            assert app.safety is not None and not app.safety.paused and not hb.risk.halted
            assert app.safety.requests.latest() is None
            assert _actions(tmp_path / "home") == []

    asyncio.run(scenario())


def test_controls_off_without_an_admin_token(candles: Path, tmp_path: Path) -> None:  # noqa: F811
    service = venue_service(candles, tmp_path)

    async def scenario() -> None:
        async with _running(tmp_path, service, admin=None) as (app, _hb, base):
            assert app.dashboard is not None and not app.dashboard.controls_enabled
            assert app.system_view().controls_enabled is False
            async with aiohttp.ClientSession(timeout=TIMEOUT) as s:
                for token in (READ, ADMIN, None):
                    got, _ = await _post(s, f"{base}/api/control/pause", token, b"{}")
                    assert got == 404
            assert app.safety is not None and not app.safety.paused

    asyncio.run(scenario())


def test_admin_token_equal_to_the_read_token_is_a_config_error(tmp_path: Path) -> None:
    secrets = Secrets(dashboard_token=READ)
    with pytest.raises(ConfigError, match=ADMIN_TOKEN_ENV):
        admin_token(secrets, {ADMIN_TOKEN_ENV: READ})
    with pytest.raises(ConfigError, match="16 characters"):
        admin_token(secrets, {ADMIN_TOKEN_ENV: "short"})
    assert admin_token(secrets, {}) is None
    assert admin_token(secrets, {ADMIN_TOKEN_ENV: ADMIN}) == ADMIN
    # the app refuses to start with it, before touching the venue (nothing listens on that URL)
    data = coordinator_config(f"http://127.0.0.1:{free_port()}", [], dashboard_port=free_port())
    data["model_servers"] = [{"id": "ms-0", "url": f"http://127.0.0.1:{free_port()}"}]
    app = CoordinatorApp(parse_config(data), Home(tmp_path / "h"), secrets=secrets, admin_token=None)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ADMIN_TOKEN_ENV, READ)
        with pytest.raises(ConfigError, match=ADMIN_TOKEN_ENV):
            asyncio.run(app.run())


def test_each_action_acts_is_journaled_and_logged(
    candles: Path,  # noqa: F811 - fixture
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = venue_service(candles, tmp_path)
    caplog.set_level(logging.WARNING, logger="coordinator.safety")

    async def scenario() -> None:
        async with (
            _running(tmp_path, service) as (app, hb, base),
            aiohttp.ClientSession(timeout=TIMEOUT) as s,
        ):
            assert app.safety is not None and app.dashboard is not None
            assert app.system_view().controls_enabled is True
            control = f"{base}/api/control"
            ws = await s.ws_connect(f"{base.replace('http', 'ws')}/ws?token={READ}")
            snap = SERVER_MESSAGE.validate_json((await ws.receive(timeout=10)).data)
            assert isinstance(snap, SnapshotMessage) and snap.system is not None
            assert snap.system.controls_enabled and snap.risk is not None and not snap.risk.paused

            # pause: entries refused (trading_disabled); resume: allowed again
            assert "trading_disabled" not in await _entry_refused_reasons(hb)
            got, answer = await _post(s, f"{control}/pause", ADMIN)
            assert got == 200 and answer["ok"] and answer["action"] == "pause"
            assert answer["risk"]["paused"] is True and answer["risk"]["trading_enabled"] is False
            assert "trading_disabled" in await _entry_refused_reasons(hb)
            got, answer = await _post(s, f"{control}/resume", ADMIN, b"{}")
            assert got == 200 and answer["risk"]["paused"] is False
            assert "trading_disabled" not in await _entry_refused_reasons(hb)

            # reset-breaker: a tripped error-burst breaker is cleared
            now = hb.clock.now_ms()
            for _ in range(hb.risk.breaker_params.error_burst):
                hb.risk.on_exchange_error(now, "drill")
            assert BreakerKind.ERROR_BURST in hb.risk.state.breakers.blocking(now)
            got, answer = await _post(s, f"{control}/reset-breaker", ADMIN, b'{"name": "error_burst"}')
            assert got == 200 and answer["action"] == "reset-breaker"
            assert hb.risk.state.breakers.blocking(hb.clock.now_ms()) == []
            assert hb.risk.state.breakers.states[BreakerKind.ERROR_BURST].total_trips == 1  # history kept

            # halt + flatten: the open position is closed on the paper exchange
            ex = hb.exchange
            mark = await ex.mark_price(SYMBOL)
            stop, take = (mark * Decimal("0.97")).quantize(CENT), (mark * Decimal("1.03")).quantize(CENT)
            await ex.place_order(SYMBOL, Side.BUY, Decimal("0.01"), stop, take)
            held = sum((p.positionAmt for p in await ex.client.get_open_positions(SYMBOL)), Decimal(0))
            assert held == Decimal("0.01")
            got, answer = await _post(s, f"{control}/halt", ADMIN, b'{"flatten": true, "confirm": "FLATTEN"}')
            assert got == 200 and answer["action"] == "halt+flatten", answer
            assert answer["risk"]["halted"] is True and answer["risk"]["flatten"] == "done", answer
            held = sum((p.positionAmt for p in await ex.client.get_open_positions(SYMBOL)), Decimal(0))
            assert held == 0
            assert await ex.client.get_open_orders(SYMBOL) == []
            assert await ex.client.get_open_algo_orders(SYMBOL) == []
            assert hb.risk.halted
            request = app.safety.requests.latest()
            assert request is not None and request.actor == "dashboard" and request.flatten

            # every action journaled (who = dashboard), logged at WARNING, seen by the client as a log
            assert _actions(tmp_path / "home") == [
                ("dashboard", "pause", 1),
                ("dashboard", "resume", 1),
                ("dashboard", "reset-breaker", 1),
                ("dashboard", "halt+flatten", 1),
            ]
            warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
            for action in ("pause", "resume", "reset-breaker", "halt+flatten"):
                assert any(m.startswith(f"dashboard control: {action} ") for m in warned), warned
            seen: list[str] = []

            async def logs_seen() -> bool:
                while True:
                    msg = SERVER_MESSAGE.validate_json((await ws.receive(timeout=10)).data)
                    if isinstance(msg, LogMessage) and msg.line.message.startswith("dashboard control:"):
                        seen.append(msg.line.message)
                        if len(seen) == 4:
                            return True

            assert await asyncio.wait_for(logs_seen(), 10)
            assert READ not in " ".join(seen) and ADMIN not in " ".join(seen)
            await ws.close()

            # the pause outlives a restart: journaled, read back at start
            got, _ = await _post(s, f"{control}/pause", ADMIN)
            assert got == 200
            await until(lambda: hb.journal.entries_paused(), what="pause journaled")

    asyncio.run(scenario())
