"""What a beat did, and where it is shown: Prometheus metrics and the dashboard feed.

:class:`SymbolBeat` and :class:`BeatReport` are the heartbeat's results (also handed to
``on_beat``).  :class:`Publisher` turns one beat into the metrics of :mod:`coordinator.metrics`
(votes and their latency, decisions and their reasons, model servers up, breakers, equity, daily
PnL, open positions, beat duration) and into one ``beat`` message of the dashboard feed
(:mod:`coordinator.ws_server`: positions, decisions, models, the equity point, blocking breakers,
and ``ensemble``: the ensemble's log-loss, Brier and ECE against the constant and the pool shares;
the same figures are the ``xylen_ensemble_*`` gauges).
Publishing never changes what was decided.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from coordinator.ensemble import Decision
from coordinator.exchange.schemas import Position
from coordinator.feed_models import (
    BeatMessage,
    DecisionView,
    EnsembleQualityView,
    EquityPoint,
    ModelStatusView,
    PositionRow,
)
from coordinator.metrics import Metrics
from coordinator.model_client import FanOut, ModelClients, VoteStatus
from coordinator.orders.manager import Placement
from coordinator.risk import AccountView
from coordinator.risk.manager import RiskResult
from coordinator.snapshot import MarketSnapshot
from coordinator.ws_server import DashboardServer


@dataclass(frozen=True, slots=True)
class SymbolBeat:
    """What one beat did for one symbol."""

    beat_id: str
    snapshot: MarketSnapshot
    fanout: FanOut
    decision: Decision
    risk: RiskResult | None = None
    placement: Placement | None = None
    note: str = ""  # why no order was sent although the ensemble traded


@dataclass(frozen=True, slots=True)
class BeatReport:
    """One beat: per symbol results, its duration and how many decisions were labelled."""

    number: int
    started_ms: int
    symbols: dict[str, SymbolBeat]
    duration_s: float
    outcomes: int = 0


@dataclass
class Publisher:
    """Metrics and the dashboard feed of each beat (``dashboard`` None: metrics only)."""

    metrics: Metrics
    models: ModelClients
    dashboard: DashboardServer | None
    leverage: Callable[[], int]

    def record(
        self,
        results: dict[str, SymbolBeat],
        account: AccountView,
        positions: Sequence[Position],
        daily_pnl: Decimal,
        trips: dict[str, int],
        blocking: Sequence[str],
        duration_s: float,
    ) -> None:
        """The beat's metrics: votes, decisions, model servers, breakers, account and duration."""
        m = self.metrics
        for r in results.values():
            for res in r.fanout.results:
                asked = res.status is not VoteStatus.BACKOFF
                m.observe_vote(res.server_id, res.status.value, res.latency_ms / 1000.0 if asked else None)
            m.observe_decision(r.decision.action.value, [x.value for x in r.decision.reasons])
        first = next(iter(results.values()), None)  # the ensemble's record is the same in every symbol's
        if first is not None:
            m.set_ensemble_quality(first.decision.quality, first.decision.pool_weights())
        for state in self.models.states():
            m.set_model_server_up(state.config.id, state.up)
        for name in trips:
            m.set_breaker(name, name in blocking)
        m.set_account(
            float(account.equity), float(daily_pnl), sum(1 for p in positions if p.positionAmt != 0)
        )
        m.observe_beat(duration_s)

    def publish(
        self,
        report: BeatReport,
        account: AccountView,
        positions: Sequence[Position],
        daily_pnl: Decimal,
        blocking: Sequence[str],
    ) -> None:
        """One ``beat`` message to every dashboard client (nothing without a dashboard)."""
        if self.dashboard is None:
            return
        views = [
            PositionRow(
                symbol=p.symbol,
                side="LONG" if p.positionAmt > 0 else "SHORT",
                quantity=float(abs(p.positionAmt)),
                entry_price=float(p.entryPrice),
                mark_price=float(p.markPrice),
                unrealized_pnl_usd=float(p.unRealizedProfit),
                leverage=self.leverage(),
            )
            for p in positions
            if p.positionAmt != 0
        ]
        models = [
            ModelStatusView(
                server_id=s.config.id,
                up=s.up,
                status=s.last_status.value if s.last_status else None,
                latency_ms=s.last_latency_ms,
                model_version=s.last_model_version,
            )
            for s in self.models.states()
        ]
        self.dashboard.publish_beat(
            BeatMessage(
                ts=report.started_ms,
                positions=views,
                decisions=[DecisionView.from_decision(r.decision) for r in report.symbols.values()],
                models=models,
                equity=[EquityPoint(ts=report.started_ms, equity_usd=float(account.equity),
                                    daily_pnl_usd=float(daily_pnl))],
                breakers={name: True for name in blocking},
                ensemble=next((EnsembleQualityView.from_decision(r.decision)
                               for r in report.symbols.values()), None),
            )
        )  # fmt: skip
