"""Routing by symbol and per-model labels, against REAL model server processes on 127.0.0.1.

Two servers of a LightGBM model trained on the shipped BTC 5m candles: one declares it was trained
for BTCUSDT (no-trade band 12 bps), the other for ETHUSDT (no band).  The coordinator's client
learns each one's symbols and label from ``/health``, asks only the servers that cover a symbol, and
:class:`coordinator.outcomes.Outcomes` labels each server's outcomes with that server's horizon and
band (:mod:`xylen.labels`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from coordinator.ensemble import Ensemble, Market, Vote
from coordinator.model_client import ModelClients, VoteStatus
from coordinator.outcomes import Outcomes
from coordinator.snapshot import MarketData, MarketSnapshot
from coordinator.storage.journal import Journal
from model_server.tests.server_support import (
    TOKEN,
    ServerProcess,
    feature_rows,
    start_server,
    train_booster,
    write_model_dir,
)
from xylen.config.schema import ModelServerConfig, XylenConfig
from xylen.contract import PredictRequest
from xylen.features import FEATURE_VERSION
from xylen.labels import LabelSpec

BAND = 0.0012
STEP = 300_000


@pytest.fixture(scope="module")
def servers(
    tmp_path_factory: pytest.TempPathFactory, btc_5m_path: Path
) -> Iterator[dict[str, ServerProcess]]:
    booster = train_booster(btc_5m_path, rounds=20, seed=0)
    procs: dict[str, ServerProcess] = {}
    try:
        for sid, symbol, band in (("btc", "BTCUSDT", BAND), ("eth", "ETHUSDT", 0.0)):
            home = tmp_path_factory.mktemp(f"home-{sid}")
            folder = write_model_dir(home / "models" / "v1", booster, "v1")
            meta = json.loads((folder / "metadata.json").read_text())
            meta.update(symbol=symbol, symbols=[symbol], label_band=band)
            (folder / "metadata.json").write_text(json.dumps(meta))
            procs[sid] = start_server(home, {"TRAINING_INTERVAL": "0", "MODEL_ID": f"test/{sid}"})
        yield procs
    finally:
        for proc in procs.values():
            proc.stop()


def configs(servers: dict[str, ServerProcess], **symbols: list[str]) -> list[ModelServerConfig]:
    return [ModelServerConfig(id=sid, url=p.url, symbols=symbols.get(sid)) for sid, p in servers.items()]


def request(rows: list[dict[str, float]], symbol: str) -> PredictRequest:
    return PredictRequest(
        request_id="beat-1",
        symbol=symbol,
        timeframe="5m",
        timestamp=1_706_745_599_999,
        features=rows[0],
        feature_version=FEATURE_VERSION,
    )


def test_only_servers_covering_the_symbol_are_asked(
    servers: dict[str, ServerProcess], btc_5m_path: Path
) -> None:
    rows = feature_rows(btc_5m_path, 1)

    async def scenario() -> None:
        async with ModelClients(configs(servers), TOKEN) as clients:
            await clients.discover()
            states = {s.config.id: s for s in clients.states()}
            assert states["btc"].served_symbols == ("BTCUSDT",)
            assert states["btc"].label == LabelSpec(12, "5m", BAND)
            assert states["eth"].label == LabelSpec(12, "5m", 0.0)
            for symbol, sid in (("BTCUSDT", "btc"), ("ETHUSDT", "eth")):
                fan = await clients.predict_all(request(rows, symbol), 5.0)
                assert [r.server_id for r in fan.results] == [sid]
                assert fan.result(sid).status is VoteStatus.OK
            fan = await clients.predict_all(request(rows, "SOLUSDT"), 5.0)
            assert fan.results == () and fan.votes == ()

    asyncio.run(scenario())


def test_unknown_servers_are_asked_until_their_health_is_learned(
    servers: dict[str, ServerProcess], btc_5m_path: Path
) -> None:
    rows = feature_rows(btc_5m_path, 1)

    async def scenario() -> None:
        async with ModelClients(configs(servers), TOKEN) as clients:
            first = await clients.predict_all(request(rows, "ETHUSDT"), 5.0)
            # not yet known: both asked; the BTC model refuses ETH with a 409 naming its symbols
            assert first.result("eth").status is VoteStatus.OK
            refused = first.result("btc")
            assert refused.http_status == 409 and "BTCUSDT" in refused.detail
            await clients.discover()
            second = await clients.predict_all(request(rows, "ETHUSDT"), 5.0)
            assert [r.server_id for r in second.results] == ["eth"]

    asyncio.run(scenario())


def test_config_narrows_the_symbols_a_server_is_asked_about(
    servers: dict[str, ServerProcess], btc_5m_path: Path
) -> None:
    rows = feature_rows(btc_5m_path, 1)

    async def scenario() -> None:
        async with ModelClients(configs(servers, btc=["ETHUSDT"]), TOKEN) as clients:
            await clients.discover()
            fan = await clients.predict_all(request(rows, "BTCUSDT"), 5.0)
            assert fan.results == ()  # the BTC model, but configured for ETH only: never asked

    asyncio.run(scenario())


def snapshot(symbol: str, close_time: int, close: float) -> MarketSnapshot:
    return MarketSnapshot(
        symbol=symbol,
        interval="5m",
        taken_ms=close_time,
        server_ms=close_time,
        open_time_ms=close_time + 1 - STEP,
        close_time_ms=close_time,
        close=close,
        mark_price=cast(Any, close),
        last_price=cast(Any, close),
        funding_rate=0.0,
        next_funding_ms=None,
        features={"rsi_14": 50.0},
        candles=[],
        candle_count=0,
        new_candles=1,
    )


def test_each_server_gets_outcomes_at_its_own_horizon_and_outside_its_band(
    servers: dict[str, ServerProcess], tmp_path: Path
) -> None:
    """Decisions on BTCUSDT: the coordinator labels at 10 min (2 bars) for its ensemble; the BTC
    server, whose model learned a 12-bar label with a 12 bps band, gets each outcome at 12 bars and
    only when the move left the band; the ETH server never gets BTC outcomes."""
    from coordinator.storage.db import init_db

    t0 = 1_706_745_600_000 - 1  # close time of the first decision candle
    closes = [100.0 + 0.005 * i for i in range(30)]  # +0.5 bp a bar: 6 bps in 12 bars, inside the band
    closes[14] = closes[2] * 1.01  # decision at bar 2 moved 1 % after 12 bars: learnable

    async def scenario() -> None:
        async with ModelClients(configs(servers), TOKEN) as clients:
            await clients.discover()
            market = MarketData(cast(Any, None), ["BTCUSDT"], "5m", 500)  # the client is not used here
            conn = init_db(tmp_path / "xylen.db")
            conn.execute("PRAGMA foreign_keys = OFF")  # outcomes without their beats' rows: not tested here
            ensemble = Ensemble.from_config(XylenConfig.model_validate({"model_servers": [
                {"id": "btc", "url": servers["btc"].url}, {"id": "eth", "url": servers["eth"].url},
            ]}))  # fmt: skip
            sent: list[tuple[str, list[Any]]] = []
            real_retrain = clients.retrain_all

            async def record(outcomes: Any, fv: str, server_ids: Any = None) -> Any:
                sent.append((",".join(server_ids or []), list(outcomes)))
                return await real_retrain(outcomes, fv, server_ids)

            clients.retrain_all = record  # type: ignore[method-assign,assignment]  # a recording spy
            outcomes = Outcomes(market, clients, Journal(conn), lambda: ensemble, lambda: 2 * STEP, batch=1)
            vote = Vote(model_id="btc", prob_up=0.6)
            for i, close in enumerate(closes):
                close_time = t0 + i * STEP
                market.tails["BTCUSDT"].append([[close_time + 1 - STEP, close, close, close, close, 1.0]])
                snap = snapshot("BTCUSDT", close_time, close)
                outcomes.mature({"BTCUSDT": snap})
                if i < 4:
                    outcomes.remember(f"beat-{i}", snap, [vote], Market(close_time, close))
            await outcomes.close()
            assert [sid for sid, _ in sent] == ["btc"]  # one learnable outcome, to the BTC server only
            (outcome,) = sent[0][1]
            assert outcome.request_id == "beat-2" and outcome.label == 1
            assert not outcomes.pending

    asyncio.run(scenario())
