"""The dashboard feed's messages and the history API's pages (pydantic, extra keys refused).

Every message a client receives on ``/ws`` is one of :data:`ServerMessage` (discriminated by
``type``): ``snapshot`` on connect, ``beat`` per heartbeat, ``log`` per log line, ``risk`` when the
safety switches change, ``pong``.  No model has a secret field.  The server is
:mod:`coordinator.ws_server`; the control API's bodies and answer are here too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from coordinator.ensemble.types import Decision

# ---------------------------------------------------------------------- message schema


class _View(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PositionRow(_View):
    """One open position, as the dashboard lists it (the risk manager's own position type is
    :class:`coordinator.risk.checks.PositionView`: signed Decimal quantity and mark)."""

    symbol: str
    side: Literal["LONG", "SHORT"]
    quantity: float
    entry_price: float
    mark_price: float | None = None
    unrealized_pnl_usd: float | None = None
    leverage: int | None = None
    stop_loss: float | None = None
    take_profit: float | None = None
    opened_ms: int | None = None


class TradeView(_View):
    """One trade (a position's life: entry, and exit once closed)."""

    trade_id: str
    symbol: str
    side: Literal["LONG", "SHORT"]
    quantity: float
    entry_price: float
    exit_price: float | None = None
    pnl_usd: float | None = None
    fees_usd: float | None = None
    opened_ms: int
    closed_ms: int | None = None
    exit_reason: str | None = None
    funding_usd: float | None = None


class VoteView(_View):
    """One model's part in a decision: raw and calibrated probability, normalised weight."""

    model_id: str
    prob_raw: float | None
    prob: float | None
    weight: float | None


class DecisionView(_View):
    """An ensemble decision (the fields of ``Decision.to_dict()``; non-finite numbers become null)."""

    timestamp_ms: int
    action: Literal["LONG", "SHORT", "HOLD"]
    probability: float | None
    confidence: float | None
    expected_value_bps: float | None
    size_fraction: float | None
    stop_loss: float | None
    take_profit: float | None
    votes: list[VoteView]
    reasons: list[str]
    disagreement: float | None
    source: str
    base_weight: float | None = None
    symbol: str | None = None
    risk: str | None = None

    @classmethod
    def from_decision(
        cls, decision: Decision, symbol: str | None = None, risk: str | None = None
    ) -> DecisionView:
        """The view of an ensemble :class:`Decision` (``risk``: see :func:`risk_text`)."""
        return cls.model_validate({**_finite_tree(decision.to_dict()), "symbol": symbol, "risk": risk})  # type: ignore[dict-item]


def risk_text(approved: bool | None, reasons: Sequence[str] = ()) -> str | None:
    """The risk manager's answer as the feed shows it: ``approved``, ``refused: <reasons>``, or
    None when the decision never reached the risk manager (a HOLD)."""
    if approved is None:
        return None
    return "approved" if approved else "refused: " + ", ".join(reasons)


class ReliabilityBin(_View):
    """One bin of a reliability diagram: mean predicted probability, observed up share, count."""

    p: float
    y: float
    n: int


class EnsembleQualityView(_View):
    """The ensemble's answers over its recent outcomes against the constant base rate.

    ``log_loss_skill`` = ``constant_log_loss - log_loss`` (positive: the ensemble beats the
    constant); ``calibration_a``/``calibration_b``: the pool's recalibration ``σ(a + b z)``;
    ``weights``: each model's share of the pool and the base rate's (``_base_rate``).
    """

    n: int
    log_loss: float | None = None
    constant_log_loss: float | None = None
    log_loss_skill: float | None = None
    brier: float | None = None
    constant_brier: float | None = None
    ece: float | None = None
    calibration_a: float | None = None
    calibration_b: float | None = None
    weights: dict[str, float] = Field(default_factory=dict)
    reliability: list[ReliabilityBin] = Field(default_factory=list)

    @classmethod
    def from_decision(
        cls, decision: Decision, reliability: Sequence[ReliabilityBin] = ()
    ) -> EnsembleQualityView | None:
        """The quality a decision carries, with the decision's vote and base-rate shares."""
        if decision.quality is None:
            return None
        data = {**decision.quality.to_dict(), "weights": decision.pool_weights()}
        return cls.model_validate({**_finite_tree(data), "reliability": list(reliability)})  # type: ignore[dict-item]


class ModelStatusView(_View):
    """One model server as the last beat saw it.

    ``latency_p50_ms``/``latency_p99_ms``: over its last 100 answers; ``weight``: its share of the
    ensemble's pool in the last decision; ``log_loss``/``constant_log_loss``/``outcomes``: its
    calibrated probabilities over the outcomes the ensemble tracks for it, against the constant
    (the observed up share of those outcomes); ``calibration``: ``uncalibrated`` (no outcome yet),
    ``calibrating`` (outcomes, no calibrator fitted yet) or ``calibrated``.
    """

    server_id: str
    up: bool
    status: str | None = None
    latency_ms: float | None = None
    model_version: str | None = None
    backend: str | None = None
    symbols: list[str] = Field(default_factory=list)
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    last_prob_up: float | None = None
    last_vote_ms: int | None = None
    weight: float | None = None
    log_loss: float | None = None
    constant_log_loss: float | None = None
    outcomes: int | None = None
    calibration: Literal["uncalibrated", "calibrating", "calibrated"] | None = None


class SystemView(_View):
    """The coordinator itself: venue, where it trades, the beat's wall-clock interval, controls.

    ``beat_interval_ms``: real milliseconds between beats (an accelerated clock divides the
    configured interval by its speed), so a client marks data stale after two of them.
    """

    venue: Literal["paper", "testnet", "live"]
    base_url: str
    symbols: list[str]
    beat_interval_ms: int
    controls_enabled: bool = False
    version: str = ""
    started_ms: int = 0


class AccountView(_View):
    """The account at the last beat; ``daily_loss_limit_usd``: the tighter of the risk config's
    daily limits in USDT (the percentage applied to the day's starting equity)."""

    equity_usd: float
    available_usd: float | None = None
    daily_pnl_usd: float
    daily_loss_limit_usd: float | None = None
    trading_enabled: bool = True


class OrderRow(_View):
    """One open order of the order store (``purpose``: the leg of its intent)."""

    client_order_id: str
    symbol: str
    side: Literal["BUY", "SELL"]
    type: str
    purpose: str
    state: str
    quantity: float | None = None
    price: float | None = None
    stop_price: float | None = None
    filled_qty: float = 0.0
    updated_ms: int = 0


class ReconciliationDifference(_View):
    """One difference the last reconciliation found between SQLite and the exchange."""

    rule: str
    symbol: str | None = None
    detail: str = ""


class ReconciliationView(_View):
    """The last finished reconciliation: when, clean or not, and what differed."""

    ts: int
    ok: bool
    differences: list[ReconciliationDifference] = Field(default_factory=list)


class BreakerView(_View):
    """One circuit breaker: tripped now or not, when its cooldown ends, why it last tripped."""

    name: str
    tripped: bool
    until_ms: int | None = None
    reason: str | None = None


class EquityPoint(_View):
    """One point of the equity curve."""

    ts: int
    equity_usd: float
    daily_pnl_usd: float | None = None


class LogLine(_View):
    """One log line."""

    ts: int
    level: str
    logger: str
    message: str


class RiskStateView(_View):
    """The safety switches: halted or not and why, where a flatten stands, whether trading is on.

    ``flatten``: the newest flatten request's state (``none`` when the newest request is a plain
    halt or there is none).
    """

    halted: bool
    reason: str = ""
    halted_ms: int | None = None
    flatten: Literal["none", "pending", "running", "done", "failed"] = "none"
    trading_enabled: bool = True
    daily_limits: list[str] = Field(default_factory=list)
    paused: bool = False


class RiskMessage(_View):
    """Sent when the risk state changes (a halt, a flatten starting or ending, a reset)."""

    type: Literal["risk"] = "risk"
    ts: int
    risk: RiskStateView


class _StateFields(_View):
    """The fields a snapshot and a beat share."""

    ts: int
    positions: list[PositionRow] = Field(default_factory=list)
    decisions: list[DecisionView] = Field(default_factory=list)
    trades: list[TradeView] = Field(default_factory=list)
    models: list[ModelStatusView] = Field(default_factory=list)
    equity: list[EquityPoint] = Field(default_factory=list)
    logs: list[LogLine] = Field(default_factory=list)
    breakers: dict[str, bool] = Field(default_factory=dict)
    risk: RiskStateView | None = None
    ensemble: EnsembleQualityView | None = None
    system: SystemView | None = None
    account: AccountView | None = None
    orders: list[OrderRow] = Field(default_factory=list)
    reconciliation: ReconciliationView | None = None
    breaker_details: list[BreakerView] = Field(default_factory=list)


class SnapshotMessage(_StateFields):
    """Sent once on connect: the current state and recent history."""

    type: Literal["snapshot"] = "snapshot"


class BeatMessage(_StateFields):
    """Sent each heartbeat: the full current positions, orders, models, breakers, account, system
    and reconciliation, and what is NEW since the last beat (decisions, trades, equity, logs)."""

    type: Literal["beat"] = "beat"


class LogMessage(_View):
    """One log line, as it is logged."""

    type: Literal["log"] = "log"
    ts: int
    line: LogLine


class PongMessage(_View):
    """The answer to a client's ``ping``."""

    type: Literal["pong"] = "pong"
    ts: int


ServerMessage = Annotated[
    SnapshotMessage | BeatMessage | LogMessage | PongMessage | RiskMessage, Field(discriminator="type")
]
SERVER_MESSAGE: TypeAdapter[SnapshotMessage | BeatMessage | LogMessage | PongMessage | RiskMessage] = (
    TypeAdapter(ServerMessage)
)


# ---------------------------------------------------------------------- control API


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class EmptyBody(_Body):
    """The body of ``pause`` and ``resume`` (none, or ``{}``)."""


class HaltBody(_Body):
    """``POST /api/control/halt``: ``flatten`` closes every position and needs ``confirm: "FLATTEN"``."""

    flatten: bool = False
    confirm: str = ""


class ResetBreakerBody(_Body):
    """``POST /api/control/reset-breaker``: the breaker's name (see ``breaker_details``)."""

    name: str = Field(min_length=1, max_length=64)


class ControlAnswer(_View):
    """The answer to a control action: what was done and the safety switches after it."""

    ok: bool = True
    action: str
    risk: RiskStateView


class TradesPage(_View):
    trades: list[TradeView]


class DecisionsPage(_View):
    decisions: list[DecisionView]


class EquityPage(_View):
    equity: list[EquityPoint]


def feed_json_schema() -> dict[str, object]:
    """The JSON Schema of every feed message and of the control API's answer (what a client's
    types are generated from and checked against)."""
    adapter: TypeAdapter[object] = TypeAdapter(ServerMessage | ControlAnswer)
    return adapter.json_schema(mode="serialization")


def _finite_tree(value: object) -> object:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_tree(v) for v in value]
    return value
