"""The heartbeat (DESIGN §1): one decision cycle per ``heartbeat.interval_seconds`` of clock time.

One beat, for every symbol at once::

    snapshot (coordinator.snapshot) + account  ->  parallel fan-out to every model server
    (per-server timeout, beat deadline)  ->  ensemble.decide  ->  risk.validate  ->  order
    (FuturesExchange.place_order, only for an approved entry with no position or open intent on the
    symbol; never when ``trading.enabled`` is false)  ->  metrics  ->  journal.log_beat  ->  dashboard

Every beat is logged, HOLDs and refusals included: the snapshot's features, every server's vote
(failures as NaN votes with their status), the decision with its HOLD reasons, the risk answer with
its reasons and the order's ``clientOrderId``.

Outcomes: a decision taken on a new closed candle waits until its horizon (``trading.horizon_minutes``)
has closed too; then its label (close after the horizon > close at the decision) goes to
``ensemble.observe`` and the journal's outcomes, and, in batches of ``retrain_batch``, to every model
server's ``/retrain`` (a tracked background task: the beat never waits for it).  Equity and the
number of votes go to the risk manager every beat (drawdown and quorum breakers).

Entries (:mod:`coordinator.entries`): ``trading.entry`` ``market`` sends a MARKET order; ``limit`` and
``maker_preferred`` a post-only LIMIT at the touch, whose ``trading.maker_timeout_seconds`` (clock
time, kept in SQLite) is enforced at the start of every beat (:meth:`EntryDesk.check`) and, with a
wall or accelerated clock, by a watcher task at the deadline; ``maker_preferred`` falls back to a
MARKET entry only when the decision re-priced with taker costs still has a positive EV.

Closed trades (:meth:`Heartbeat.settle_trades`, at the start of every beat, before any decision): every
intent the order layer has closed (a bracket leg fired, a close, a liquidation or a manual close seen
as a flat position) becomes one round trip computed from its fills in the order store (VWAP entry and
exit, quantity, realised PnL, fees; an order executed beyond its recorded fills -- a missed stream
event -- gets its trades from ``userTrades`` first) and the funding the position paid: the sum of
the exchange's ``FUNDING_FEE`` income entries for the symbol between the entry and the exit
(``/fapi/v1/income``; one intent per symbol at a time, so they are the trade's).  It is written
with ``journal.log_trade``, and only when that row is new do its fills go to ``risk.on_fill`` (the
fees) and the trade to ``risk.on_close`` with its realised PnL net of funding (daily PnL, win/loss
counts, the consecutive-losses breaker and the loss cooldown), so the risk manager's daily PnL and
the trade's ``net_pnl`` (realised - fees - funding) agree.  The ``trades`` row is the idempotency
key: a second scan or a restart never counts a trade twice, and a trade already logged costs no
income request (nor does one open between two hours: funding is settled only on the hour).  When
the income request fails it is tried again next beat; an exchange without income history (refused)
gets funding 0, logged as an error.

Errors, by reaction (STYLE practice 4): :data:`FATAL` errors (the exchange refusing our keys) stop the
loop and so the process; any other failure of a beat is logged with its traceback, counted
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
from coordinator.ensemble import Decision, Ensemble, Market, Outcome, Vote
from coordinator.entries import EntryContext, EntryDesk
from coordinator.exchange.errors import (
    ExchangeError,
)
from coordinator.exchange.facade import FuturesExchange
from coordinator.exchange.schemas import Balance, Position
from coordinator.feed_models import PositionRow as PositionMessage
from coordinator.metrics import Metrics
from coordinator.model_client import FanOut, ModelClients, VoteStatus
from coordinator.orders.manager import Placement, SymbolBusy
from coordinator.orders.models import Side as OrderSide
from coordinator.risk import AccountView, MarketView, PositionView, RiskManager, Side
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
from coordinator.ws_server import (
    BeatMessage,
    DashboardServer,
    DecisionView,
    EquityPoint,
    ModelStatusView,
)
from xylen.config.schema import XylenConfig
from xylen.contract import Outcome as WireOutcome
from xylen.contract import PredictRequest
from xylen.features import FEATURE_VERSION

logger = logging.getLogger(__name__)

ZERO = Decimal(0)
OPEN_NOTE = "position or intent already open"  # why an entry was not sent: Reason.POSITION_OPEN
_PREDICTION_STATUS: dict[VoteStatus, PredictionStatus] = {
    VoteStatus.TIMEOUT: "timeout",
    VoteStatus.DEADLINE: "timeout",
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
    """One beat: per symbol results, its duration and ``decide_to_order_s`` (snapshot in hand -> sent)."""

    number: int
    started_ms: int
    symbols: dict[str, SymbolBeat]
    duration_s: float
    outcomes: int = 0


@dataclass(frozen=True, slots=True)
class Pending:
    """A decision waiting for its horizon to close."""

    beat_id: str
    symbol: str
    decision_ms: int
    entry: float
    votes: tuple[Vote, ...]
    market: Market
    features: dict[str, float]


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
    retrain_batch: int = 32
    on_beat: Callable[[BeatReport], None] | None = None
    beats: int = 0
    failed_beats: int = 0
    pending: list[Pending] = field(default_factory=list)
    retrain_buffer: list[WireOutcome] = field(default_factory=list)
    _decided: dict[str, int] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _staged: tuple[XylenConfig, Ensemble, RiskManager] | None = None
    entries: EntryDesk = field(init=False)
    trades: TradeSettler = field(init=False)

    def __post_init__(self) -> None:
        self.entries = EntryDesk(
            self.exchange, self.clock, lambda: self.config.trading, lambda: self.ensemble.params
        )
        self.trades = TradeSettler(self.exchange, self.journal, self.clock)

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
        self._flush_retrain(force=True)
        if self._tasks:
            _done, pending = await asyncio.wait(self._tasks, timeout=timeout_s)
            for task in pending:
                logger.warning("retrain post %s still running at shutdown: cancelled", task.get_name())
                task.cancel()

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
        matured = self._mature(snaps)
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
        self._record_metrics(results, account, positions, stats.breaker_trips, stats.breakers_blocking)
        self.metrics.observe_beat(duration)
        report = BeatReport(self.beats, now, results, duration, matured)
        self._publish(report, account, positions, stats.daily_pnl, stats.breakers_blocking)
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
        usdt = next((b for b in balances if b.asset == "USDT"), None)
        wallet = usdt.balance if usdt is not None else ZERO
        available = usdt.availableBalance if usdt is not None else ZERO
        open_positions = [p for p in positions if p.positionAmt != 0]
        unrealised = sum((p.unRealizedProfit for p in open_positions), ZERO)
        return AccountView(
            equity=wallet + unrealised,
            available_balance=available,
            unrealised_pnl=unrealised,
            positions=tuple(PositionView(p.symbol, p.positionAmt, p.markPrice) for p in open_positions),
            leverage=Decimal(self.config.exchange.leverage),
        )

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
        self._remember(beat_id, snap, fanout.votes, market)
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
        assert decision.stop_loss is not None and decision.take_profit is not None
        context = EntryContext(
            probability=decision.confidence,
            decision_ms=self.clock.now_ms(),
            funding_rate=snap.funding_rate,
            next_funding_ms=snap.next_funding_ms,
        )
        try:
            entry = await self.entries.enter(
                snap.symbol,
                OrderSide.BUY if side is Side.LONG else OrderSide.SELL,
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

    # ------------------------------------------------------------------ outcomes

    def _remember(self, beat_id: str, snap: MarketSnapshot, votes: Sequence[Vote], market: Market) -> None:
        """Keep the first decision on each new closed candle until its horizon closes."""
        if self._decided.get(snap.symbol) == snap.close_time_ms or not votes:
            return
        self._decided[snap.symbol] = snap.close_time_ms
        self.pending.append(
            Pending(beat_id, snap.symbol, snap.close_time_ms, snap.close, tuple(votes), market, snap.features)
        )

    def _mature(self, snaps: dict[str, MarketSnapshot]) -> int:
        """Label the pending decisions whose horizon has closed; returns how many."""
        horizon = self.config.trading.horizon_minutes * 60_000
        keep: list[Pending] = []
        done = 0
        for p in self.pending:
            snap = snaps.get(p.symbol)
            target = p.decision_ms + horizon
            if snap is None or snap.close_time_ms < target:
                keep.append(p)
                continue
            tail = self.market.tails[p.symbol]
            index = int(tail.open_time.searchsorted(target + 1 - self.market.step_ms))
            if index >= len(tail):
                keep.append(p)
                continue
            exit_price = float(tail.columns["close"][index])
            label = 1 if exit_price > p.entry else 0
            return_bps = (exit_price / p.entry - 1.0) * 1e4
            self.ensemble.observe(Outcome.from_votes(p.votes, p.market, label, target))
            self.journal.log_outcome(p.beat_id, target, label, exit_price, return_bps)
            self.retrain_buffer.append(
                WireOutcome(request_id=p.beat_id, timestamp=p.decision_ms, features=p.features, label=label)
            )
            done += 1
        self.pending = keep
        self._flush_retrain()
        return done

    def _flush_retrain(self, *, force: bool = False) -> None:
        if not self.retrain_buffer or (len(self.retrain_buffer) < self.retrain_batch and not force):
            return
        batch, self.retrain_buffer = self.retrain_buffer, []
        task = asyncio.create_task(self._retrain(batch), name=f"retrain:{len(batch)}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _retrain(self, batch: list[WireOutcome]) -> None:
        results = await self.models.retrain_all(batch, FEATURE_VERSION)
        failed = [r.server_id for r in results if not r.ok]
        logger.info("sent %d outcomes to %d server(s) for retraining; failed: %s",
                    len(batch), len(results), failed or "none")  # fmt: skip

    # ------------------------------------------------------------------ metrics and dashboard

    def _record_metrics(
        self,
        results: dict[str, SymbolBeat],
        account: AccountView,
        positions: Sequence[Position],
        trips: dict[str, int],
        blocking: Sequence[str],
    ) -> None:
        m = self.metrics
        for r in results.values():
            for res in r.fanout.results:
                asked = res.status is not VoteStatus.BACKOFF
                m.observe_vote(res.server_id, res.status.value, res.latency_ms / 1000.0 if asked else None)
            m.observe_decision(r.decision.action.value, [x.value for x in r.decision.reasons])
        for state in self.models.states():
            m.set_model_server_up(state.config.id, state.up)
        for name in trips:
            m.set_breaker(name, name in blocking)
        stats_pnl = self.risk.statistics(self.clock.now_ms()).daily_pnl
        m.set_account(
            float(account.equity), float(stats_pnl), sum(1 for p in positions if p.positionAmt != 0)
        )

    def _publish(
        self,
        report: BeatReport,
        account: AccountView,
        positions: Sequence[Position],
        daily_pnl: Decimal,
        blocking: Sequence[str],
    ) -> None:
        if self.dashboard is None:
            return
        views = [
            PositionMessage(
                symbol=p.symbol,
                side="LONG" if p.positionAmt > 0 else "SHORT",
                quantity=float(abs(p.positionAmt)),
                entry_price=float(p.entryPrice),
                mark_price=float(p.markPrice),
                unrealized_pnl_usd=float(p.unRealizedProfit),
                leverage=self.config.exchange.leverage,
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
            )
        )  # fmt: skip
