"""The feed a real coordinator publishes: the paper exchange over HTTP, two real model server
processes (LightGBM), the app's dashboard on 127.0.0.1, a real WebSocket client.

Every field of the dashboard contract is present and typed in the snapshot and in beats (system,
account, orders with their purpose and state, reconciliation, breaker details, model status with
backend, symbols, latency percentiles, last vote, weight, log-loss and calibration state, decision
symbol and risk answer, trade funding, reliability bins), a trade closed during the run reaches the
client in a beat and the history API, and no secret appears in any message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from coordinator.app import CoordinatorApp
from coordinator.clock import InstantClock
from coordinator.feed_models import SERVER_MESSAGE, BeatMessage, SnapshotMessage, TradesPage
from coordinator.tests.heartbeat_support import (
    KEY,
    SECRET,
    STEP_MS,
    SYMBOL,
    built_heartbeat,
    coordinator_config,
    free_port,
    model_servers,
    paper_venue,
    venue_service,
)
from coordinator.tests.test_exchange_support import candles  # noqa: F401 - fixture
from model_server.tests.server_support import TOKEN as MODEL_TOKEN
from model_server.tests.server_support import ServerProcess
from xylen.config import parse_config
from xylen.config.secrets import Secrets
from xylen.paths import Home

READ = "read-token-8c2e71d5aa"
ADMIN = "admin-token-0f9b3e6d47c1"
TIMEOUT = aiohttp.ClientTimeout(total=30)
BEATS = 7


@pytest.fixture(scope="module")
def servers(btc_5m_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServerProcess]]:
    with model_servers(btc_5m_path, tmp_path_factory.mktemp("servers")) as procs:
        yield procs


def _secrets_in(text: str) -> list[str]:
    return [s for s in (READ, ADMIN, MODEL_TOKEN, SECRET, KEY) if s in text]


@pytest.mark.slow
def test_every_contract_field_is_filled_from_the_running_coordinator(
    candles: Path,  # noqa: F811 - fixture
    tmp_path: Path,
    servers: list[ServerProcess],
) -> None:
    service = venue_service(candles, tmp_path)

    async def scenario() -> None:
        async with paper_venue(service) as url:
            port = free_port()
            data = coordinator_config(url, servers, dashboard_port=port)
            data["dashboard"]["require_token"] = True
            secrets = Secrets(
                paper_api_key=KEY, paper_api_secret=SECRET, model_token=MODEL_TOKEN, dashboard_token=READ
            )
            app = CoordinatorApp(
                parse_config(data), Home(tmp_path / "home"), secrets=secrets, admin_token=ADMIN
            )
            texts: list[str] = []
            async with built_heartbeat(app) as hb, aiohttp.ClientSession(timeout=TIMEOUT) as s:
                base = f"http://127.0.0.1:{port}"
                ws = await s.ws_connect(f"ws://127.0.0.1:{port}/ws?token={READ}")
                first = (await ws.receive(timeout=10)).data
                texts.append(first)
                snap = SERVER_MESSAGE.validate_json(first)
                assert isinstance(snap, SnapshotMessage)
                # before the first beat the snapshot already says what the coordinator is
                assert snap.system is not None and snap.system.venue == "paper"
                assert snap.system.symbols == [SYMBOL] and snap.system.controls_enabled
                assert snap.system.beat_interval_ms == 1000  # the instant clock: shown as 1 s
                assert snap.system.base_url == url and snap.system.version and snap.system.started_ms > 0
                assert snap.risk is not None and snap.risk.halted is False

                assert isinstance(hb.clock, InstantClock)
                closed = False
                for _ in range(BEATS):
                    report = await hb.beat()
                    service.step_to(service.now_ms() + STEP_MS)
                    hb.clock.advance(STEP_MS)
                    intents = hb.exchange.store.open_intents()
                    if intents and not closed and report.symbols[SYMBOL].placement is None:
                        # close the position the models opened, so the next beat settles a trade
                        await hb.exchange.manager.close_position(intents[0].intent_id)
                        closed = True
                await asyncio.sleep(0.2)
                beats: list[BeatMessage] = []
                while True:
                    try:
                        msg = await ws.receive(timeout=1)
                    except asyncio.TimeoutError:
                        break
                    texts.append(msg.data)
                    parsed = SERVER_MESSAGE.validate_json(msg.data)
                    if isinstance(parsed, BeatMessage):
                        beats.append(parsed)
                assert len(beats) == BEATS
                last = beats[-1]

                # system and account
                assert last.system is not None and last.system.venue == "paper"
                assert last.account is not None and last.account.equity_usd > 0
                assert last.account.available_usd is not None
                assert (
                    last.account.daily_loss_limit_usd is not None
                    and 0 < last.account.daily_loss_limit_usd <= 200
                )
                assert isinstance(last.account.trading_enabled, bool)
                # decisions: symbol and the risk manager's answer
                decisions = [d for b in beats for d in b.decisions]
                assert len(decisions) == BEATS and {d.symbol for d in decisions} == {SYMBOL}
                assert any(d.risk is not None for d in decisions)
                for d in decisions:
                    assert d.risk is None or d.risk == "approved" or d.risk.startswith("refused: ")
                    assert (d.risk is None) == (d.action == "HOLD")
                # orders: the bracket of an open position, with purpose and state
                with_orders = [b for b in beats if b.orders]
                assert with_orders, "no beat saw an open order"
                purposes = {o.purpose for b in with_orders for o in b.orders}
                assert purposes & {"stop", "take_profit"}, purposes
                for o in with_orders[0].orders:
                    assert o.symbol == SYMBOL and o.side in ("BUY", "SELL") and o.state and o.type
                    assert o.updated_ms > 0
                held = [p for b in beats for p in b.positions]
                assert held and all(p.stop_loss is not None and p.take_profit is not None for p in held)
                # a trade closed during the run, with its funding
                trades = [t for b in beats for t in b.trades]
                assert trades, "no trade closed during the run"
                assert len({t.trade_id for t in trades}) == len(trades)  # each trade sent once
                for t in trades:
                    assert t.funding_usd is not None and t.fees_usd is not None and t.closed_ms is not None
                # reconciliation at start, breakers
                assert last.reconciliation is not None and isinstance(last.reconciliation.ok, bool)
                names = {b.name for b in last.breaker_details}
                assert names == {"consecutive_losses", "drawdown", "error_burst", "quorum_loss"}
                assert all(isinstance(b.tripped, bool) for b in last.breaker_details)
                # models
                assert {m.server_id for m in last.models} == {"ms-0", "ms-1"}
                for m in last.models:
                    assert m.up and m.backend == "lightgbm" and m.symbols
                    assert m.latency_p50_ms is not None and m.latency_p99_ms is not None
                    assert 0 < m.latency_p50_ms <= m.latency_p99_ms
                    assert m.last_prob_up is not None and 0 <= m.last_prob_up <= 1
                    assert m.last_vote_ms == last.ts
                    assert m.weight is not None and 0 <= m.weight <= 1
                    assert m.calibration in ("uncalibrated", "calibrating", "calibrated")
                    assert isinstance(m.outcomes, int)
                tracked = [m for m in last.models if m.outcomes]
                assert tracked, "no model has a tracked outcome after the horizon"
                for m in tracked:
                    assert m.log_loss is not None and m.constant_log_loss is not None
                    assert m.calibration in ("calibrating", "calibrated")
                # the ensemble's reliability bins
                assert last.ensemble is not None and last.ensemble.n > 0
                assert (
                    last.ensemble.reliability
                    and sum(b.n for b in last.ensemble.reliability) == last.ensemble.n
                )
                for b in last.ensemble.reliability:
                    assert 0 <= b.p <= 1 and 0 <= b.y <= 1 and b.n > 0

                # a client joining now gets the same state in its snapshot
                late = await s.ws_connect(f"ws://127.0.0.1:{port}/ws?token={READ}")
                text = (await late.receive(timeout=10)).data
                texts.append(text)
                snap = SERVER_MESSAGE.validate_json(text)
                assert isinstance(snap, SnapshotMessage)
                assert snap.account == last.account and snap.orders == last.orders
                assert (
                    snap.breaker_details == last.breaker_details
                    and snap.reconciliation == last.reconciliation
                )
                assert snap.models == last.models and snap.ensemble == last.ensemble
                assert [t.trade_id for t in snap.trades] == [t.trade_id for t in trades]
                # the history API has the same trade with its funding, the decisions with symbol and risk
                auth = {"Authorization": f"Bearer {READ}"}
                async with s.get(f"{base}/api/trades", headers=auth) as resp:
                    body = await resp.text()
                    texts.append(body)
                page = TradesPage.model_validate_json(body)
                assert page.trades == trades
                async with s.get(f"{base}/api/decisions?limit=3", headers=auth) as resp:
                    body = await resp.text()
                    texts.append(body)
                assert '"symbol":"BTCUSDT"' in body.replace(" ", "")
                for w in (ws, late):
                    await w.close()
            for text in texts:
                assert _secrets_in(text) == [], text[:200]

    asyncio.run(scenario())
