"""Reasons a user can trust: what the beat says about an entry it did not send is why it did not.

* sizing says ``no_headroom`` when the exposure/leverage/margin headroom cannot hold one step (or
  caps the size below the exchange minimum), ``below_min_quantity`` only when the size itself is;
* an entry decided while a position or an intent is open on the symbol is ``position_open``, decided
  before sizing: never ``below_min_quantity``, never approved, never counted toward
  ``max_orders_per_minute`` (real paper exchange over HTTP, the real app and its journal);
* the demo's beat line, read from that journal, shows that reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

from coordinator.app import CoordinatorApp
from coordinator.ensemble.types import Action, Vote
from coordinator.heartbeat import Heartbeat, SymbolBeat
from coordinator.model_client import FanOut, ServerResult, VoteStatus
from coordinator.orders import IntentStatus, Side
from coordinator.risk import Reason, SizeRefusal
from coordinator.tests.heartbeat_support import (
    KEY,
    SECRET,
    SYMBOL,
    built_heartbeat,
    coordinator_config,
    free_port,
    intent_status,
    paper_venue,
    venue_service,
)
from coordinator.tests.risk_support import D, account, manager, market, proposal
from coordinator.tests.test_exchange_support import candles  # noqa: F401 - fixture
from coordinator.tests.test_manager_support import until
from coordinator.tests.test_risk_sizing import params, size
from paper_exchange.service import PaperExchangeService
from xylen.config import parse_config
from xylen.config.secrets import Secrets
from xylen.contract import PredictResponse
from xylen.demo_beats import BeatReader
from xylen.paths import Home

# ---------------------------------------------------------------------- sizing


def test_headroom_below_one_step_is_no_headroom_not_below_min_quantity() -> None:
    p = params(sizing="fixed_fraction", fixed_fraction=0.01)  # wants 50 units (5,000 USD) at 100
    # one step (0.01) costs 1 USD at 100: 0.5 USD of headroom cannot hold it
    assert size(p, max_notional=D("0.5")) == (D(0), SizeRefusal.NO_HEADROOM)
    assert size(p, max_notional=D("0")) == (D(0), SizeRefusal.NO_HEADROOM)
    # 3 USD of headroom holds 0.03 units, but that is below the exchange's 5 USD minimum: the headroom
    # is what limited it
    assert size(p, max_notional=D("3")) == (D(0), SizeRefusal.NO_HEADROOM)
    # with room, a size that is itself below the minimum is below_min_quantity / _notional
    assert size(p, equity="0.2", max_notional=D("1e6")) == (D(0), SizeRefusal.BELOW_MIN_QUANTITY)
    assert size(p, equity="8", max_notional=D("1e6")) == (D(0), SizeRefusal.BELOW_MIN_NOTIONAL)  # 0.04 x 100
    assert size(p, max_notional=D("1000")) == (D("10.00"), None)  # capped, still tradable


def test_the_risk_manager_names_no_headroom_when_exposure_is_used_up() -> None:
    m = manager()
    held = account(positions=(("TESTUSDT", "19.999", "100"),))  # 1,999.90 of 2,000 USD per symbol
    result = m.validate(proposal(quantity=None), held, market(), market().snapshot_ms + 1_000)
    assert not result.approved
    assert Reason.NO_HEADROOM in result.reasons and Reason.BELOW_MIN_QUANTITY not in result.reasons
    assert m.orders_last_minute(market().snapshot_ms + 1_000) == 0


# ---------------------------------------------------------------------- the beat on the paper exchange


def _app(url: str, home: Path, orders_per_minute: int) -> CoordinatorApp:
    """The real coordinator, trading, with one (dead) model server: its votes are given by the test."""
    data = coordinator_config(url, [], trading=True)
    data["model_servers"] = [{"id": "ms-0", "url": f"http://127.0.0.1:{free_port()}", "timeout_ms": 500}]
    data["risk"]["max_orders_per_minute"] = orders_per_minute
    secrets = Secrets(paper_api_key=KEY, paper_api_secret=SECRET, model_token="t" * 32)
    return CoordinatorApp(parse_config(data), Home(home), secrets=secrets)


@contextlib.asynccontextmanager
async def _on_venue(
    service: PaperExchangeService, home: Path, orders_per_minute: int
) -> AsyncIterator[Heartbeat]:
    async with paper_venue(service) as url, built_heartbeat(_app(url, home, orders_per_minute)) as hb:
        yield hb


async def _long_beat(hb: Heartbeat) -> SymbolBeat:
    """One symbol's beat on the live snapshot and account with a confident LONG vote of ``ms-0``."""
    snap = (await hb.market.snapshot_all(hb.clock.now_ms()))[SYMBOL]
    account_view = hb._account_view(*await hb._account())
    price = snap.close
    stop, take = round(price * 0.97, 1), round(price * 1.03, 1)
    beat_id = uuid.uuid4().hex
    response = PredictResponse(
        request_id=beat_id, model_id="ms-0", model_version="v1", backend="lightgbm", action="LONG",
        prob_up=0.95, confidence=0.95, raw_score=2.9, stop_loss=stop, take_profit=take, latency_ms=1.0,
    )  # fmt: skip
    vote = Vote("ms-0", 0.95, Action.LONG, stop, take, latency_ms=1.0)
    fanout = FanOut((vote,), (ServerResult("ms-0", VoteStatus.OK, 1.0, 200, "", response),), 0.001)
    beat = await hb._decide_and_act(snap, (beat_id, fanout), account_view)
    assert beat.decision.action is Action.LONG, beat.decision
    return beat


def test_an_entry_with_a_position_open_is_position_open_and_never_uses_the_order_rate(
    candles: Path,  # noqa: F811 - fixture
    tmp_path: Path,
) -> None:
    service = venue_service(candles, tmp_path)
    home = tmp_path / "home"

    async def scenario() -> None:
        async with _on_venue(service, home, orders_per_minute=2) as hb:
            placed = await hb.exchange.place_order(
                SYMBOL, Side.BUY, Decimal("0.01"), Decimal("40000"), Decimal("50000")
            )
            intent_id = placed.intent.intent_id
            sent = hb.exchange.client.transport.sent["POST /fapi/v1/order"]
            for _ in range(3):  # more add-ons than the order rate allows
                beat = await _long_beat(hb)
                assert beat.placement is None
                assert beat.risk is not None and not beat.risk.approved
                assert beat.risk.reasons == (Reason.POSITION_OPEN,)
                assert beat.note == "position or intent already open"
            assert hb.risk.orders_last_minute(hb.clock.now_ms()) == 0
            assert hb.exchange.client.transport.sent["POST /fapi/v1/order"] == sent

            # flat again: the next entry is approved and sent; the refused add-ons used no order rate
            assert await hb.exchange.close_position(SYMBOL) is not None
            await until(lambda: intent_status(hb, intent_id) is IntentStatus.CLOSED, what="closed by hand")
            entry = await _long_beat(hb)
            assert entry.risk is not None and entry.risk.approved, entry.risk
            assert entry.placement is not None and not entry.placement.rejected

        conn = sqlite3.connect(Home(home).database)
        try:
            rows = conn.execute(
                "SELECT risk_approved, risk_reasons, client_order_id FROM decisions ORDER BY rowid"
            ).fetchall()
        finally:
            conn.close()
        assert [(a, [r["reason"] for r in json.loads(rs)]) for a, rs, _c in rows[:3]] == [
            (0, ["position_open"])
        ] * 3
        assert rows[3][0] == 1 and rows[3][2] is not None

        reader = BeatReader(Home(home).database)
        try:
            lines = reader.new_lines()
        finally:
            reader.close()
        assert len(lines) == 4
        for line in lines[:3]:
            assert "| LONG not sent (position already open) |" in line, line
            assert "below_min_quantity" not in line and "approved" not in line
        assert "| LONG approved, order sent |" in lines[3], lines[3]

    asyncio.run(scenario())
