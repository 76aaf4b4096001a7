"""What a beat did, and where it is shown: Prometheus metrics and the dashboard feed.

:class:`SymbolBeat` and :class:`BeatReport` are the heartbeat's results (also handed to
``on_beat``).  :class:`Publisher` turns one beat into the metrics of :mod:`coordinator.metrics`
(votes and their latency, decisions and their reasons, model servers up, breakers, equity, daily
PnL, open positions, beat duration; with :attr:`Publisher.risk_of` the halt flag and the day's
effective daily loss limit) and into one ``beat`` message of the dashboard feed
(:mod:`coordinator.ws_server`: positions with their brackets, decisions with their symbol and the
risk manager's answer, trades closed since the last beat, models, the equity point, blocking
breakers, and ``ensemble``: the ensemble's log-loss, Brier and ECE against the constant, the pool
shares and its reliability bins; the same figures are the ``xylen_ensemble_*`` gauges).

With :class:`FeedSources` (wired by the app) a beat also carries what the heartbeat does not hand
over: the system (venue, symbols, wall-clock beat interval), the account with the daily loss
limit, the open orders of the order store, the last reconciliation, every breaker with its
cooldown and last trip, and per model server its backend, symbols, latency p50/p99 over its last
:data:`LATENCY_WINDOW` answers, last vote, pool weight, log-loss against the constant over the
outcomes the ensemble tracks for it and its calibration state.
Publishing never changes what was decided.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np

from coordinator.ensemble import Decision, Ensemble
from coordinator.ensemble.weighting import binary_log_loss
from coordinator.exchange.schemas import Position
from coordinator.feed_models import (
    AccountView as AccountRow,
)
from coordinator.feed_models import (
    BeatMessage,
    BreakerView,
    DecisionView,
    EnsembleQualityView,
    EquityPoint,
    ModelStatusView,
    OrderRow,
    PositionRow,
    ReconciliationDifference,
    ReconciliationView,
    ReliabilityBin,
    SystemView,
    TradeView,
    risk_text,
)
from coordinator.metrics import Metrics
from coordinator.model_client import FanOut, ModelClients, ServerState, VoteStatus
from coordinator.orders.manager import Placement
from coordinator.orders.models import Order, OrderKind
from coordinator.orders.store import OrderStore
from coordinator.risk import AccountView, RiskManager
from coordinator.risk.manager import RiskResult
from coordinator.snapshot import MarketSnapshot
from coordinator.storage.journal import Journal, TradeRecord
from coordinator.ws_server import DashboardServer
from xylen.config.schema import XylenConfig

LATENCY_WINDOW = 100  # answers per model server the latency percentiles are over
_PURPOSE = {
    OrderKind.ENTRY: "entry",
    OrderKind.STOP_LOSS: "stop",
    OrderKind.TAKE_PROFIT: "take_profit",
    OrderKind.CLOSE: "exit",
}


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
class FeedSources:
    """What the feed reads besides a beat's results (the app wires it; getters follow reloads)."""

    config: Callable[[], XylenConfig]
    risk: Callable[[], RiskManager]
    ensemble: Callable[[], Ensemble]
    store: OrderStore
    journal: Journal
    system: Callable[[], SystemView]
    now_ms: Callable[[], int]


@dataclass
class _ServerSeen:
    """What the feed remembers of one model server across beats."""

    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    backend: str | None = None
    key: str | None = None  # the id the ensemble tracks its outcomes under
    last_prob_up: float | None = None
    last_vote_ms: int | None = None
    weight: float | None = None


@dataclass
class Publisher:
    """Metrics and the dashboard feed of each beat (``dashboard`` None: metrics only)."""

    metrics: Metrics
    models: ModelClients
    dashboard: DashboardServer | None
    leverage: Callable[[], int]
    sources: FeedSources | None = None
    # The risk manager and configuration in force (wired by the app): the halt and daily loss
    # limit gauges of each beat; None leaves them unset.
    risk_of: Callable[[], tuple[RiskManager, XylenConfig]] | None = None
    _seen: dict[str, _ServerSeen] = field(default_factory=dict)
    _trades_sent: set[str] = field(default_factory=set)
    _trades_since_ms: int | None = None

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
        if self.risk_of is not None:
            risk, config = self.risk_of()
            m.set_risk(risk.halted, daily_loss_limit(config, risk.state.day_start_equity))
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
        self._remember(report)
        src = self.sources
        brackets = _brackets(src.store) if src is not None else {}
        views = [
            PositionRow(
                symbol=p.symbol,
                side="LONG" if p.positionAmt > 0 else "SHORT",
                quantity=float(abs(p.positionAmt)),
                entry_price=float(p.entryPrice),
                mark_price=float(p.markPrice),
                unrealized_pnl_usd=float(p.unRealizedProfit),
                leverage=self.leverage(),
                **brackets.get(p.symbol, {}),
            )
            for p in positions
            if p.positionAmt != 0
        ]
        first = next(iter(report.symbols.values()), None)
        message = BeatMessage(
            ts=report.started_ms,
            positions=views,
            decisions=[
                DecisionView.from_decision(r.decision, symbol, _risk(r.risk))
                for symbol, r in report.symbols.items()
            ],
            models=self._models(),
            equity=[EquityPoint(ts=report.started_ms, equity_usd=float(account.equity),
                                daily_pnl_usd=float(daily_pnl))],
            breakers={name: True for name in blocking},
            ensemble=None if first is None else EnsembleQualityView.from_decision(
                first.decision, reliability_bins(src.ensemble()) if src is not None else ()
            ),
        )  # fmt: skip
        if src is not None:
            message = message.model_copy(update=self._extras(src, account, daily_pnl))
        self.dashboard.publish_beat(message)

    # ------------------------------------------------------------------ what the feed remembers

    def _remember(self, report: BeatReport) -> None:
        """Latencies, backends, last votes and pool weights of this beat's answers."""
        for r in report.symbols.values():
            votes = {v.model_id: v for v in r.fanout.votes}
            weights = r.decision.pool_weights()
            for res in r.fanout.results:
                seen = self._seen.setdefault(res.server_id, _ServerSeen())
                if res.status is VoteStatus.OK and res.response is not None:
                    seen.latencies.append(res.latency_ms)
                    seen.backend = res.response.backend or seen.backend
                vote = votes.get(res.server_id)
                if vote is not None:
                    seen.key = vote.key
                    seen.last_prob_up = vote.prob_up if math.isfinite(vote.prob_up) else None
                    seen.last_vote_ms = report.started_ms
                    seen.weight = weights.get(res.server_id)

    def _models(self) -> list[ModelStatusView]:
        ensemble = self.sources.ensemble() if self.sources is not None else None
        return [self._model(s, self._seen.get(s.config.id, _ServerSeen()), ensemble)
                for s in self.models.states()]  # fmt: skip

    @staticmethod
    def _model(state: ServerState, seen: _ServerSeen, ensemble: Ensemble | None) -> ModelStatusView:
        symbols = list(state.served_symbols or state.config.symbols or ())
        lat = np.fromiter(seen.latencies, dtype=np.float64)
        tracked = model_record(ensemble, seen.key or state.config.id) if ensemble is not None else {}
        return ModelStatusView(
            server_id=state.config.id,
            up=state.up,
            status=state.last_status.value if state.last_status else None,
            latency_ms=state.last_latency_ms,
            model_version=state.last_model_version,
            backend=seen.backend,
            symbols=symbols,
            latency_p50_ms=float(np.percentile(lat, 50)) if lat.size else None,
            latency_p99_ms=float(np.percentile(lat, 99)) if lat.size else None,
            last_prob_up=seen.last_prob_up,
            last_vote_ms=seen.last_vote_ms,
            weight=seen.weight,
            **tracked,
        )

    def _extras(self, src: FeedSources, account: AccountView, daily_pnl: Decimal) -> dict[str, object]:
        """The fields only :class:`FeedSources` can fill."""
        config, risk = src.config(), src.risk()
        last = src.journal.last_reconciliation()
        return {
            "system": src.system(),
            "account": AccountRow(
                equity_usd=float(account.equity),
                available_usd=float(account.available_balance),
                daily_pnl_usd=float(daily_pnl),
                daily_loss_limit_usd=daily_loss_limit(config, risk.state.day_start_equity),
                trading_enabled=risk.trading_enabled and config.trading.enabled and not risk.halted,
            ),
            "orders": [order_row(o) for o in src.store.live_orders()],
            "reconciliation": None if last is None else ReconciliationView(
                ts=last.finished_ms, ok=not last.differences,
                differences=[ReconciliationDifference(rule=k, symbol=s, detail=d)
                             for k, s, d in last.differences],
            ),
            "breaker_details": breaker_views(risk, src.now_ms()),
            "trades": [trade_view(t) for t in self._new_trades(src.journal)],
        }  # fmt: skip

    def _new_trades(self, journal: Journal) -> list[TradeRecord]:
        """Trades closed since the last beat (the first beat only marks where to start)."""
        since = self._trades_since_ms
        rows = journal.trades(since if since is not None else 0)
        if since is None:  # the snapshot loaded the history already
            self._trades_since_ms = max((t.exit_ms for t in rows), default=0)
            self._trades_sent.update(t.intent_id for t in rows)
            return []
        new = [t for t in rows if t.intent_id not in self._trades_sent]
        self._trades_sent.update(t.intent_id for t in new)
        if new:
            self._trades_since_ms = max(since, *(t.exit_ms for t in new))
        return new


# ---------------------------------------------------------------------- views


def _risk(result: RiskResult | None) -> str | None:
    if result is None:
        return None
    return risk_text(result.approved, [r.value for r in result.reasons])


def _brackets(store: OrderStore) -> dict[str, dict[str, float | int | None]]:
    """Per symbol, the open intent's stop, take-profit and opening time."""
    out: dict[str, dict[str, float | int | None]] = {}
    for intent in store.open_intents():
        out[intent.symbol] = {
            "stop_loss": None if intent.stop_price is None else float(intent.stop_price),
            "take_profit": None if intent.take_profit_price is None else float(intent.take_profit_price),
            "opened_ms": intent.created_ms,
        }
    return out


def order_row(order: Order) -> OrderRow:
    """The feed's row of one order of the store."""
    return OrderRow(
        client_order_id=order.client_order_id,
        symbol=order.symbol,
        side="BUY" if order.side.value == "BUY" else "SELL",
        type=order.type.value,
        purpose=_PURPOSE.get(order.kind, order.kind.value),
        state=order.state.value,
        quantity=None if order.qty is None else float(order.qty),
        price=None if order.price is None else float(order.price),
        stop_price=None if order.trigger_price is None else float(order.trigger_price),
        filled_qty=float(order.executed_qty),
        updated_ms=order.updated_ms or order.created_ms,
    )


def trade_view(t: TradeRecord) -> TradeView:
    """The feed's view of one closed trade (``pnl_usd`` net of fees and funding)."""
    return TradeView(
        trade_id=t.intent_id,
        symbol=t.symbol,
        side=t.side,
        quantity=float(t.qty),
        entry_price=float(t.entry_price),
        exit_price=float(t.exit_price),
        pnl_usd=float(t.net_pnl),
        fees_usd=float(t.fees),
        funding_usd=float(t.funding),
        opened_ms=t.entry_ms,
        closed_ms=t.exit_ms,
        exit_reason=t.exit_reason or None,
    )


def daily_loss_limit(config: XylenConfig, day_start_equity: Decimal) -> float:
    """The tighter of the USDT and percentage daily loss limits, in USDT."""
    usd = config.risk.daily_loss_limit_usd
    if day_start_equity > 0:
        return min(usd, float(day_start_equity) * config.risk.daily_loss_limit_pct / 100)
    return usd


def breaker_views(risk: RiskManager, now_ms: int) -> list[BreakerView]:
    """Every breaker: tripped now, its cooldown end and why it last tripped (the risk events)."""
    reasons: dict[str, str] = {}
    if risk.store is not None:
        for _ts, kind, detail, _actor in risk.store.events(100):
            if kind.startswith("breaker:"):
                reasons.setdefault(kind.removeprefix("breaker:"), detail)
    return [
        BreakerView(
            name=kind.value,
            tripped=state.blocking(now_ms),
            until_ms=state.tripped_until_ms or None,
            reason=reasons.get(kind.value),
        )
        for kind, state in risk.state.breakers.states.items()
    ]


def reliability_bins(ensemble: Ensemble) -> list[ReliabilityBin]:
    """The pool's recent outcomes in equal-width bins of its answer (``ECE_BINS``, empty ones left out)."""
    return [ReliabilityBin(p=p, y=y, n=n) for p, y, n in ensemble.pool_quality.reliability()]


def model_record(ensemble: Ensemble, key: str) -> dict[str, object]:
    """A model's log-loss over the outcomes the ensemble tracks for it (its recent window of
    calibrated probabilities), the constant's (the window's up share) and its calibration state."""
    window: Iterable[tuple[float, float, int]] = ensemble.windows.get(key, ())
    rows = list(window)
    cal = ensemble.calibrations.get(key)
    state = "calibrated" if cal is not None and cal.calibrator is not None else (
        "calibrating" if rows else "uncalibrated"
    )  # fmt: skip
    if not rows:
        return {"outcomes": 0, "calibration": state}
    labels = [int(r[2]) for r in rows]
    base = sum(labels) / len(labels)
    return {
        "outcomes": len(rows),
        "log_loss": math.fsum(binary_log_loss(r[1], y) for r, y in zip(rows, labels, strict=True))
        / len(rows),
        "constant_log_loss": math.fsum(binary_log_loss(base, y) for y in labels) / len(labels),
        "calibration": state,
    }
