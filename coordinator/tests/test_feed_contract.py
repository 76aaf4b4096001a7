"""The feed's message models against the dashboard contract: every field the frontend reads exists
under exactly the contract's name, new fields are optional (an old client's messages still parse),
and :func:`feed_json_schema` describes every message and the control answer."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from coordinator.feed_models import (
    AccountView,
    BeatMessage,
    BreakerView,
    ControlAnswer,
    DecisionView,
    EnsembleQualityView,
    ModelStatusView,
    OrderRow,
    ReconciliationDifference,
    ReconciliationView,
    ReliabilityBin,
    SnapshotMessage,
    SystemView,
    TradeView,
    feed_json_schema,
    risk_text,
)

CONTRACT: dict[type[BaseModel], set[str]] = {
    SystemView: {
        "venue", "base_url", "symbols", "beat_interval_ms", "controls_enabled", "version", "started_ms",
    },
    AccountView: {"equity_usd", "available_usd", "daily_pnl_usd", "daily_loss_limit_usd", "trading_enabled"},
    OrderRow: {
        "client_order_id", "symbol", "side", "type", "purpose", "state", "quantity", "price", "stop_price",
        "filled_qty", "updated_ms",
    },
    ReconciliationView: {"ts", "ok", "differences"},
    ReconciliationDifference: {"rule", "symbol", "detail"},
    BreakerView: {"name", "tripped", "until_ms", "reason"},
    ReliabilityBin: {"p", "y", "n"},
    ControlAnswer: {"ok", "action", "risk"},
}  # fmt: skip
ADDED: dict[type[BaseModel], set[str]] = {
    SnapshotMessage: {"system", "account", "orders", "reconciliation", "breaker_details", "breakers"},
    BeatMessage: {"system", "account", "orders", "reconciliation", "breaker_details", "breakers"},
    ModelStatusView: {
        "backend", "symbols", "latency_p50_ms", "latency_p99_ms", "last_prob_up", "last_vote_ms", "weight",
        "log_loss", "constant_log_loss", "outcomes", "calibration",
    },
    DecisionView: {"symbol", "risk"},
    TradeView: {"funding_usd"},
    EnsembleQualityView: {"reliability"},
}  # fmt: skip


@pytest.mark.parametrize("model", list(CONTRACT), ids=lambda m: m.__name__)
def test_new_views_have_exactly_the_contract_fields(model: type[BaseModel]) -> None:
    assert set(model.model_fields) == CONTRACT[model]


@pytest.mark.parametrize("model", list(ADDED), ids=lambda m: m.__name__)
def test_added_fields_exist_and_are_optional(model: type[BaseModel]) -> None:
    fields = model.model_fields
    assert ADDED[model] <= set(fields)
    for name in ADDED[model]:
        assert not fields[name].is_required(), f"{model.__name__}.{name} must have a default"


def test_an_old_beat_still_parses_with_the_new_fields_at_their_defaults() -> None:
    old: dict[str, Any] = {
        "type": "beat",
        "ts": 1,
        "positions": [],
        "models": [{"server_id": "a", "up": True}],
    }
    beat = BeatMessage.model_validate(old)
    assert beat.system is None and beat.account is None and beat.orders == [] and beat.breaker_details == []
    assert beat.models[0].symbols == [] and beat.models[0].calibration is None


def test_the_schema_names_every_message_and_the_control_answer() -> None:
    names = set(feed_json_schema()["$defs"])  # type: ignore[call-overload]
    assert {
        "SnapshotMessage",
        "BeatMessage",
        "LogMessage",
        "PongMessage",
        "RiskMessage",
        "ControlAnswer",
    } <= names
    assert {m.__name__ for m in CONTRACT} <= names


def test_risk_text() -> None:
    assert risk_text(None) is None
    assert risk_text(True) == "approved"
    assert risk_text(False, ["halted", "trading_disabled"]) == "refused: halted, trading_disabled"
