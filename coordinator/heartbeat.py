"""The heartbeat: one decision cycle per ``heartbeat.interval_seconds`` of clock time.

One beat, for every symbol at once::

    snapshot (coordinator.snapshot) + account  ->  settle closed trades  ->  label matured outcomes
    ->  parallel fan-out to every model server (per-server timeout, beat deadline)  ->  ensemble.decide
    ->  position_open check  ->  risk.validate  ->  order (only for an approved entry; never when
    ``trading.enabled`` is false)  ->  journal.log_beat  ->  risk equity/quorum  ->  metrics and dashboard

This module is the beat loop; the parts it calls live in their own modules: closed trades in
:mod:`coordinator.trades`, outcome labelling and retrain feedback in :mod:`coordinator.outcomes`,
metrics and the dashboard feed in :mod:`coordinator.publish`, entry styles in
:mod:`coordinator.entries`.

Every beat is logged, HOLDs and refusals included: the snapshot's features, every server's vote
(failures as NaN votes with their status), the decision with its HOLD reasons, the risk answer with
its reasons and the order's ``clientOrderId``.  Equity and the number of votes go to the risk
manager every beat (drawdown and quorum breakers).

One position (and one intent) per symbol at a time: an entry decided while the symbol holds a
position or an open intent is refused before sizing with the reason ``position_open`` (logged like a
risk refusal), so it is neither sized -- whose refusal would only name the exposure already taken --
nor counted toward ``max_orders_per_minute``.

Entries (:mod:`coordinator.entries`): ``trading.entry`` ``market`` sends a MARKET order; ``limit`` and
``maker_preferred`` a post-only LIMIT at the touch, whose ``trading.maker_timeout_seconds`` (clock
time, kept in SQLite) is enforced at the start of every beat (:meth:`EntryDesk.check`) and, with a
wall or accelerated clock, by a watcher task at the deadline; ``maker_preferred`` falls back to a
MARKET entry only when the decision re-priced with taker costs still has a positive EV.

Closed trades (:meth:`Heartbeat.settle_trades`, at the start of every beat, before any decision): every
intent the order layer has closed becomes one ``trades`` row and the risk manager's fill and close
updates, committed in one transaction (see :mod:`coordinator.trades`).

Errors, by reaction: :data:`FATAL` errors (the exchange refusing our keys) stop the loop and so the
process; any other failure of a beat is logged with its traceback, counted
(:attr:`Heartbeat.failed_beats`; exchange errors also feed the risk manager's error-burst breaker and
``xylen_exchange_errors_total``) and the loop goes on with the next beat.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from coordinator.clock import Clock
from coordinator.decision import proposal_from_decision
from coordinator.ensemble import Decision, Ensemble, Market, Vote
from coordinator.entries import EntryContext, EntryDesk, account_view
from coordinator.exchange.errors import ExchangeError
from coordinator.exchange.facade import FuturesExchange
from coordinator.exchange.schemas import Balance, Position
from coordinator.metrics import Metrics
from coordinator.model_client import FanOut, ModelClients, VoteStatus
from coordinator.orders.manager import Placement, SymbolBusy
from coordinator.outcomes import Outcomes
from coordinator.publish import BeatReport, Publisher, SymbolBeat
from coordinator.risk import AccountView, MarketView, RiskManager, Side
from coordinator.risk.checks import Violation, position_open_violation
from coordinator.risk.manager import RiskResult
from coordinator.snapshot import MarketData, MarketSnapshot
from coordinator.storage.journal import (
    Journal,
    Prediction,
    PredictionStatus,
    Snapshot,
    TradeRecord,
)
from coordinator.trades import FATAL, TradeSettler
from coordinator.ws_server import DashboardServer
from xylen.config.schema import XylenConfig
from xylen.contract import PredictRequest

__all__ = ["FATAL", "OPEN_NOTE", "BeatReport", "Heartbeat", "SymbolBeat"]

logger = logging.getLogger(__name__)

ZERO = Decimal(0)
OPEN_NOTE = "position or intent already open"  # why an entry was not sent: Reason.POSITION_OPEN
_PREDICTION_STATUS: dict[VoteStatus, PredictionStatus] = {
    VoteStatus.TIMEOUT: "timeout",
    VoteStatus.DEADLINE: "timeout",
}


@dataclass
class Heartbeat:
    """The beat loop over composed parts (all built by :mod:`coordinator.app`)."""

    config: XylenConfig
    clock: Clock
    market: MarketData
    exchange: FuturesExchange
    models: ModelClients
    ensemble: Ensemble
    risk: RiskManager
    journal: Journal
    metrics: Metrics
    dashboard: DashboardServer | None = None
    on_beat: Callable[[BeatReport], None] | None = None
    beats: int = 0
    failed_beats: int = 0
    _staged: tuple[XylenConfig, Ensemble, RiskManager] | None = None
    entries: EntryDesk = field(init=False)
    trades: TradeSettler = field(init=False)
    outcomes: Outcomes = field(init=False)
    publisher: Publisher = field(init=False)

    def __post_init__(self) -> None:
        self.entries = EntryDesk(
            self.exchange, self.clock, lambda: self.config.trading, lambda: self.ensemble.params
        )
        self.trades = TradeSettler(self.exchange, self.journal, self.clock)
        self.outcomes = Outcomes(
            self.market,
            self.models,
            self.journal,
            lambda: self.ensemble,
            lambda: self.config.trading.horizon_minutes * 60_000,
        )
        self.publisher = Publisher(
            self.metrics, self.models, self.dashboard, lambda: self.config.exchange.leverage
        )

    @property
    def retrain_batch(self) -> int:
        """How many labelled outcomes are posted to ``/retrain`` at once."""
        return self.outcomes.batch

    @retrain_batch.setter
    def retrain_batch(self, value: int) -> None:
        self.outcomes.batch = value

    # ------------------------------------------------------------------ configuration

    def apply(self, config: XylenConfig, ensemble: Ensemble, risk: RiskManager) -> None:
        """Take a reloaded config (between beats): new ensemble, risk manager and beat timing."""
        self.config = config
        self.ensemble = ensemble
        self.risk = risk
        self.journal.params = ensemble.params

    def stage(self, config: XylenConfig, ensemble: Ensemble, risk: RiskManager) -> None:
        """Apply a reloaded config at the start of the next beat (never in the middle of one)."""
        self._staged = (config, ensemble, risk)

    @property
    def interval_ms(self) -> int:
        return int(self.config.heartbeat.interval_seconds * 1000)

    def deadline_s(self) -> float:
        """The fan-out's real-time deadline: the config's, within 80% of the beat's real length."""
        hb = self.config.heartbeat
        return min(hb.deadline_seconds, 0.8 * self.clock.wall_seconds(hb.interval_seconds))

    # ------------------------------------------------------------------ loop

    async def run(self, beats: int | None = None, stop: asyncio.Event | None = None) -> None:
        """Beat at every interval boundary (+ a small grace for the candle to close) until ``stop``
        is set or ``beats`` beats have run.  A beat in progress always finishes."""
        stop = stop or asyncio.Event()
        done = 0
        while not stop.is_set() and (beats is None or done < beats):
            interval = self.interval_ms
            grace = min(2_000, interval // 10)
            target = (self.clock.now_ms() // interval + 1) * interval + grace
            if await self._wait(target, stop):
                break
            done += 1
            try:
                await self.beat()
            except asyncio.CancelledError:
                raise
            except FATAL:
                logger.critical("fatal error in beat %d: stopping", self.beats, exc_info=True)
                raise
            except Exception as exc:
                self.failed_beats += 1
                if isinstance(exc, ExchangeError):
                    self.risk.on_exchange_error(self.clock.now_ms(), str(exc))
                    self.metrics.exchange_error(exc.code if exc.code is not None else exc.status or "?")
                logger.exception("beat %d failed (%d failed so far); going on", self.beats, self.failed_beats)

    async def _wait(self, target_ms: int, stop: asyncio.Event) -> bool:
        """Sleep until ``target_ms`` on the clock; True when ``stop`` was set meanwhile."""
        sleeper = asyncio.ensure_future(self.clock.sleep_until(target_ms))
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, stopper):
                task.cancel()
            await asyncio.gather(sleeper, stopper, return_exceptions=True)
        return stop.is_set()

    async def close(self, timeout_s: float = 5.0) -> None:
        """Send the buffered outcomes and wait (bounded) for retrain posts in flight; stop the maker
        entries' watchers (their deadlines stay in SQLite)."""
        await self.entries.close(timeout_s)
        await self.outcomes.close(timeout_s)

    # ------------------------------------------------------------------ one beat

    async def beat(self) -> BeatReport:
        """One full beat (module docstring); raises only when the beat could not be done."""
        if self._staged is not None:
            self.apply(*self._staged)
            self._staged = None
        self.beats += 1
        t0 = time.perf_counter()
        now = self.clock.now_ms()
        snaps, (balances, positions) = await asyncio.gather(self.market.snapshot_all(now), self._account())
        account = self._account_view(balances, positions)
        await self.entries.check()
        await self.settle_trades({p.symbol: p.markPrice for p in positions})
        matured = self.outcomes.mature(snaps)
        fanouts = await asyncio.gather(*(self._fan_out(s) for s in snaps.values()))
        results: dict[str, SymbolBeat] = {}
        for snap, fanout in zip(snaps.values(), fanouts, strict=True):
            results[snap.symbol] = await self._decide_and_act(snap, fanout, account)
        now = self.clock.now_ms()
        self.risk.on_quorum(min((len(f.votes) for _, f in fanouts), default=0), now)
        self.risk.on_equity(account.equity, account.unrealised_pnl, now)
        stats = self.risk.statistics(now)
        self.journal.log_equity(now, account.equity, stats.daily_pnl, account.unrealised_pnl)
        duration = time.perf_counter() - t0
        blocking = stats.breakers_blocking
        self.publisher.record(
            results, account, positions, stats.daily_pnl, stats.breaker_trips, blocking, duration
        )
        report = BeatReport(self.beats, now, results, duration, matured)
        self.publisher.publish(report, account, positions, stats.daily_pnl, blocking)
        logger.info(
            "beat %d: %s in %.0f ms",
            self.beats,
            ", ".join(f"{s} {r.decision.action.value}" + (" ORDER" if r.placement else "")
                      for s, r in results.items()),
            duration * 1000,
        )  # fmt: skip
        if self.on_beat is not None:
            self.on_beat(report)
        return report

    async def settle_trades(self, marks: dict[str, Decimal] | None = None) -> list[TradeRecord]:
        """Turn the intents closed since the last call into trades (module docstring); returns the new ones.

        ``marks``: mark prices per symbol, the exit price of a position closed outside our legs.
        """
        return await self.trades.settle(self.risk, marks or {})

    async def _account(self) -> tuple[list[Balance], list[Position]]:
        balances, positions = await asyncio.gather(
            self.exchange.get_account_balance(), self.exchange.get_open_positions()
        )
        return balances, positions

    def _account_view(self, balances: Sequence[Balance], positions: Sequence[Position]) -> AccountView:
        return account_view(balances, positions, self.config.exchange.leverage)

    def request(self, snap: MarketSnapshot, beat_id: str) -> PredictRequest:
        """The ``/predict`` body of one symbol's beat (features and the newest candles)."""
        return PredictRequest(
            request_id=beat_id,
            symbol=snap.symbol,
            timeframe=snap.interval,
            timestamp=snap.close_time_ms,
            candles=snap.candles,
            features=snap.features,
            feature_version=snap.feature_version,
            meta={"price": snap.close},
        )

    async def _fan_out(self, snap: MarketSnapshot) -> tuple[str, FanOut]:
        beat_id = uuid.uuid4().hex
        return beat_id, await self.models.predict_all(self.request(snap, beat_id), self.deadline_s())

    def market_of(self, snap: MarketSnapshot) -> Market:
        """The ensemble's market context of a snapshot."""
        return Market(
            timestamp_ms=snap.close_time_ms,
            price=snap.close,
            funding_rate=snap.funding_rate,
            atr=snap.atr,
            next_funding_ms=snap.next_funding_ms,
        )

    async def _decide_and_act(
        self, snap: MarketSnapshot, beat: tuple[str, FanOut], account: AccountView
    ) -> SymbolBeat:
        beat_id, fanout = beat
        market = self.market_of(snap)
        decision = self.ensemble.decide(fanout.votes, market)
        risk_result: RiskResult | None = None
        placement: Placement | None = None
        note = ""
        proposal = proposal_from_decision(decision, snap.symbol, snap.close)
        busy = self._position_open(snap.symbol, account) if proposal is not None else None
        if busy is not None:
            # no add-on: refused before sizing, so it is neither sized nor counted toward the order rate
            risk_result, note = RiskResult(False, ZERO, (busy,)), OPEN_NOTE
        elif proposal is not None:
            view = MarketView(
                snap.symbol,
                snap.mark_price,
                snap.last_price,
                snap.taken_ms,
                self.exchange.client.symbol_rules(snap.symbol),
            )
            risk_result = self.risk.validate(proposal, account, view, self.clock.now_ms())
            placement, note = await self._order(snap, proposal.side, risk_result, account, decision)
        self.outcomes.remember(beat_id, snap, fanout.votes, market)
        self.journal.log_beat(
            Snapshot(
                beat_id, snap.symbol, market, float(snap.mark_price), snap.features, snap.feature_version
            ),
            self._predictions(fanout),
            decision,
            risk_result,
            placement.entry.client_order_id if placement is not None else None,
        )
        return SymbolBeat(beat_id, snap, fanout, decision, risk_result, placement, note)

    async def _order(
        self, snap: MarketSnapshot, side: Side, result: RiskResult, account: AccountView, decision: Decision
    ) -> tuple[Placement | None, str]:
        """Send the approved entry; returns the placement or why none was sent."""
        if not result.approved or result.quantity <= 0:
            return None, "risk refused: " + ", ".join(r.value for r in result.reasons)
        if not self.config.trading.enabled:
            logger.info(
                "%s: %s %s approved; trading disabled, not sent", snap.symbol, side.value, result.quantity
            )
            return None, "trading disabled"
        if self._position_open(snap.symbol, account) is not None:
            return None, OPEN_NOTE
        if decision.stop_loss is None or decision.take_profit is None:
            raise RuntimeError(f"{snap.symbol}: a {decision.action.value} decision without its bracket")
        context = EntryContext(
            probability=decision.confidence,
            decision_ms=self.clock.now_ms(),
            funding_rate=snap.funding_rate,
            next_funding_ms=snap.next_funding_ms,
        )
        try:
            entry = await self.entries.enter(
                snap.symbol,
                side,
                result.quantity,
                Decimal(str(decision.stop_loss)),
                Decimal(str(decision.take_profit)),
                context=context,
                last_price=snap.last_price,
            )
        except SymbolBusy:
            return None, "symbol busy"
        placement = entry.placement
        if placement is None:
            return None, entry.note
        self.metrics.order_state(placement.entry.state.value)
        if placement.rejected:
            logger.warning("%s: entry rejected: %s", snap.symbol, entry.note or placement.reason)
        else:
            logger.info(
                "%s: %s %s sent as %s (%s)",
                snap.symbol,
                side.value,
                result.quantity,
                placement.entry.client_order_id,
                placement.entry.type.value,
            )
        return placement, entry.note

    def _position_open(self, symbol: str, account: AccountView) -> Violation | None:
        """``position_open`` when ``symbol`` holds a position or an open intent (one at a time)."""
        intents = sum(1 for i in self.exchange.store.open_intents() if i.symbol == symbol)
        return position_open_violation(account, symbol, intents)

    @staticmethod
    def _predictions(fanout: FanOut) -> list[Prediction]:
        votes = {v.model_id: v for v in fanout.votes}
        out: list[Prediction] = []
        for r in fanout.results:
            if r.status is VoteStatus.OK and r.response is not None and r.server_id in votes:
                resp = r.response
                out.append(Prediction(votes[r.server_id], resp.model_version, resp.backend))
            else:
                vote = Vote(r.server_id, math.nan, latency_ms=r.latency_ms)
                status = _PREDICTION_STATUS.get(r.status, "error")
                out.append(Prediction(vote, status=status, error=f"{r.status.value}: {r.detail}"[:500]))
        return out
