"""The backtest engine: the coordinator's own beat, candle by candle, on an instant clock, against the
paper exchange's matching engine in-process.

What runs, per candle of the span (its close is the decision time ``t``; nothing after ``t`` is
read: the snapshot holds the candle's features and close, the votes are the models' answers to
those features, and the venue's clock stands at the next candle's open, so any order fills after
the decision):

1. the venue's replay clock moves to the candle's close (the paper exchange's engine processes the
   candle: resting orders, stops, take-profits, funding, liquidation);
2. orders and settlement (the coordinator's): the maker entries' timeouts (:class:`EntryDesk`), the
   order monitor's poll and sweep (fills reach the order state machine, brackets are placed),
   the account, and closed intents settled into trades (:class:`TradeSettler`, risk updates);
3. outcomes: decisions whose horizon has closed are labelled and fed to the ensemble's weighting
   and calibration (:class:`Outcomes`, exactly as live);
4. votes: the models' fan-out (precomputed, :mod:`backtest.votes`, or over HTTP in the fidelity
   mode);
5. decide and act: :meth:`Heartbeat._decide_and_act`, the live heartbeat's own step (ensemble,
   position check, risk, entry with its bracket, journal), with the venue's and the coordinator's
   clocks ``trading.latency_ms`` after the close: the orders it sends arrive and are stamped then;
6. the risk manager's quorum and equity, the equity row.

Skipping idle candles (``skip_idle``): when nothing is open or resting, step 2 cannot do anything
(no order to poll, no intent to settle, the account's wallet unchanged and its unrealised PnL 0),
so it is skipped and the last account is reused; a decision that proposes a trade still gets the
full order path in step 5.  A busy candle is also *quiet* when a full order pass could only repeat
the last one's reads: the venue sent no user-data event since (no order changed, no fill, no
funding; the engine's events are counted as the live user stream would carry them), nothing was
written to the order store, the last pass wrote nothing, and nothing the order layer does by the
clock is due (:meth:`Run._quiet`); then only the maker entries' deadlines and the account are
checked.  ``tests`` run spans both ways (``skip_idle`` False runs the full order stage on every
candle) and compare the trades and decisions.

The composition follows :mod:`coordinator.app`: the same constructors, a throw-away SQLite
database, the exchange client over :class:`~backtest.transport.InProcessTransport`.  What differs
from a live beat: the snapshot's mark and last price are the candle's close (live: the venue's
prices a moment after the close); there is no dashboard and no metrics server (the metrics object
is real but not served); beat ids are deterministic (``<symbol>-<close ms>``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from backtest.columns import Columns, outcomes
from backtest.data import MarketHistory
from backtest.result import (
    TRADE_COLUMNS,
    BacktestResult,
    Costs,
)
from backtest.runlog import RunLog
from backtest.stores import BufferedJournal, DeferredRiskStore
from backtest.transport import ACCOUNT, InProcessTransport
from backtest.votes import VoteBook
from coordinator.clock import InstantClock
from coordinator.ensemble import Ensemble, EnsembleStore
from coordinator.entries import account_view
from coordinator.exchange.client import BinanceFuturesClient
from coordinator.exchange.facade import FuturesExchange
from coordinator.heartbeat import Heartbeat, SymbolBeat
from coordinator.metrics import Metrics
from coordinator.model_client import FanOut, ModelClients
from coordinator.orders.store import OrderStore
from coordinator.risk import AccountView, RiskManager
from coordinator.risk.state import RiskStore
from coordinator.snapshot import MarketSnapshot
from coordinator.storage.db import init_db
from coordinator.storage.journal import Journal
from paper_exchange.engine.models import FUNDING_INTERVAL_MS
from paper_exchange.feed import ReplayFeed
from paper_exchange.service import PaperExchangeService, ServiceConfig
from xylen.config.schema import XylenConfig
from xylen.fileio import pid_alive

logger = logging.getLogger(__name__)

STAGES = ("votes", "ensemble", "risk", "orders", "settlement", "journal")
YIELD_EVERY = 64
"""The loop hands control to the event loop every this many candles: a run's own awaits never
suspend (its venue is in-process), so without it a cancellation (Ctrl-C under ``asyncio.run``)
would wait for the end of the span."""
BPS = Decimal(10_000)


class Progress(Protocol):
    def __call__(self, done: int, total: int) -> None: ...


class Strategy(Protocol):
    """A reference strategy that replaces votes and ensemble (see :mod:`backtest.ema`)."""

    name: str

    async def on_candle(self, run: Run, i: int, snap: MarketSnapshot, account: AccountView) -> str:
        """Act on candle ``i`` through ``run.exchange``; returns the action taken (LONG, SHORT, HOLD)."""
        ...


def strategy_name(strategy: Strategy | None) -> str:
    """The name a run goes by: its reference strategy's, else ``ensemble``."""
    return strategy.name if strategy is not None else "ensemble"


@dataclass
class RunOptions:
    """How one run is done."""

    initial_equity: Decimal = Decimal(10_000)
    skip_idle: bool = True
    timing: bool = False  # µs per candle per stage (a little overhead)
    write_behind: bool = True  # False: the live stores, every beat committed (backtest.stores)
    work_dir: Path | None = None  # the run's SQLite files (default: a temporary folder)
    funding: bool = True  # False: the venue charges no funding (the reference comparison)
    progress: Progress | None = None
    log: RunLog | None = None  # the run's records go there, stamped with its market time


class _Timer:
    """Adds the time spent in its block to ``stage_s[stage]``."""

    __slots__ = ("_stage", "_stage_s", "_t0")

    def __init__(self, stage_s: dict[str, float], stage: str) -> None:
        self._stage_s = stage_s
        self._stage = stage
        self._t0 = 0.0

    def __enter__(self) -> None:
        self._t0 = time.perf_counter()

    def __exit__(self, *_exc: object) -> None:
        self._stage_s[self._stage] += time.perf_counter() - self._t0


_UNTIMED = nullcontext()


class _FeatureRows:
    """The features of candle ``i`` as Python floats, read from the history's own columns.

    The columns are the feature frame's (views, in its dtype, float32: each value becomes the same
    Python float as through float64); rows are gathered a chunk at a time, so the run holds no copy
    of the whole feature matrix (which would grow with the span) and pays one gather per chunk."""

    CHUNK = 512

    def __init__(self, columns: list[np.ndarray[Any, Any]]) -> None:
        self._columns = columns
        self._start = 0
        self._rows: list[list[float]] = []
        self._finite: list[bool] = []

    def row(self, i: int) -> tuple[list[float], bool]:
        """Candle ``i``'s values in column order, and whether all of them are finite."""
        k = i - self._start
        if not 0 <= k < len(self._rows):
            self._load(i)
            k = 0
        return self._rows[k], self._finite[k]

    def _load(self, i: int) -> None:
        block = np.stack([c[i : i + self.CHUNK] for c in self._columns], axis=1)
        self._start = i
        self._rows = block.tolist()
        self._finite = np.isfinite(block).all(axis=1).tolist()


class _Tail:
    """The heartbeat's candle tail over the span's arrays, cut at the current candle (no look-ahead)."""

    def __init__(self, open_time: np.ndarray[Any, Any], close: np.ndarray[Any, Any]) -> None:
        self._ot = open_time
        self._close = close
        self.n = 0

    def __len__(self) -> int:
        return self.n

    @property
    def open_time(self) -> np.ndarray[Any, Any]:
        return self._ot[: self.n]

    @property
    def columns(self) -> dict[str, np.ndarray[Any, Any]]:
        return {"close": self._close[: self.n]}


class _Market:
    """What :class:`Outcomes` reads of the market data: the tails and the step."""

    def __init__(self, symbol: str, history: MarketHistory) -> None:
        self.step_ms = history.step_ms
        self.tails = {symbol: _Tail(history.open_time, history.candles["close"].to_numpy(np.float64))}


@dataclass
class Run:
    """One symbol's backtest, composed (:func:`compose`) and run (:meth:`run`)."""

    config: XylenConfig
    history: MarketHistory
    votes: VoteBook | None
    strategy: Strategy | None
    options: RunOptions
    service: PaperExchangeService
    exchange: FuturesExchange
    heartbeat: Heartbeat
    clock: InstantClock
    conn: sqlite3.Connection
    http_models: ModelClients | None = None
    scratch: Path | None = None  # the temporary folder of the run's databases, removed on close
    ensemble_store: EnsembleStore | None = None  # with the live stores (``write_behind`` False)
    stage_s: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    columns: Columns = field(default_factory=lambda: Columns(0, []))  # set by :meth:`run`
    entry_info: dict[str, tuple[str, str]] = field(default_factory=dict)  # intent -> (style, versions)
    _busy: bool = False
    _venue_events: int = 0  # user-data events of the account so far (:meth:`on_venue_event`)
    _events_at_pass: int = -1  # ... when the last full order pass ended
    _state_at_pass: tuple[Any, ...] = ()  # the order layer's state when that pass ended
    _pass_changed: bool = True  # whether that pass changed it or settled a trade
    _writes_at_pass: int = -1  # the order store connection's rows written when it ended
    _trades_settled: int = 0
    _feature_names: list[str] = field(default_factory=list)
    _features: _FeatureRows | None = None
    _account: AccountView | None = None
    _position: tuple[float, float] = (0.0, 0.0)
    _income_seen: int = 0
    _fees: Decimal = Decimal(0)
    _funding: Decimal = Decimal(0)

    @property
    def symbol(self) -> str:
        return self.history.symbol

    # ------------------------------------------------------------------ timing

    def _timed(self, stage: str) -> AbstractContextManager[None]:
        """A block timed into ``stage`` (with ``timing``; otherwise a shared no-op, a few times per
        candle)."""
        if not self.options.timing:
            return _UNTIMED
        return _Timer(self.stage_s, stage)

    def _wrap_stages(self) -> None:
        """Time the heartbeat's own calls in steps 3 and 5 by wrapping them on these instances (the
        outcomes' labelling itself, a few list operations, counts in no stage)."""
        hb = self.heartbeat

        def timed(stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
            def call(*args: Any, **kwargs: Any) -> Any:
                t0 = time.perf_counter()
                try:
                    return fn(*args, **kwargs)
                finally:
                    self.stage_s[stage] += time.perf_counter() - t0

            return call

        def timed_async(stage: str, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            async def call(*args: Any, **kwargs: Any) -> Any:
                t0 = time.perf_counter()
                try:
                    return await fn(*args, **kwargs)
                finally:
                    self.stage_s[stage] += time.perf_counter() - t0

            return call

        hb.ensemble.decide = timed("ensemble", hb.ensemble.decide)  # type: ignore[method-assign]
        # the outcomes that closed: the ensemble's learning and the journal's outcome rows
        hb.ensemble.observe = timed("ensemble", hb.ensemble.observe)  # type: ignore[method-assign]
        hb.journal.log_outcome = timed("journal", hb.journal.log_outcome)  # type: ignore[method-assign]
        hb.risk.validate = timed("risk", hb.risk.validate)  # type: ignore[method-assign]
        hb.journal.log_beat = timed("journal", hb.journal.log_beat)  # type: ignore[method-assign]
        hb.entries.enter = timed_async("orders", hb.entries.enter)  # type: ignore[method-assign,assignment]

    # ------------------------------------------------------------------ the loop

    async def run(self) -> BacktestResult:
        """Every candle of the span (module docstring); the result for the report."""
        if self.options.timing:
            self._wrap_stages()
        h = self.history
        self._feature_names = [c for c in h.features.columns if c != "open_time"]
        self._features = _FeatureRows([h.features[c].to_numpy() for c in self._feature_names])
        total = h.stop - h.first
        self.columns = Columns(total, self._model_ids())
        log = self.options.log
        with log.run(strategy_name(self.strategy), self.clock.now_ms) if log is not None else nullcontext():
            started = time.perf_counter()
            self._account = await self._fetch_account()
            for n, i in enumerate(range(h.first, h.stop)):
                await self._candle(i)
                if n % YIELD_EVERY == YIELD_EVERY - 1:
                    await asyncio.sleep(0)
                if self.options.progress is not None and (n % 500 == 0 or n == total - 1):
                    self.options.progress(n + 1, total)
            await self._candle_end(h.stop)
            self._flush_stores()
            elapsed = time.perf_counter() - started
        return self._result(elapsed)

    def _flush_stores(self) -> None:
        """Write what the write-behind stores hold (:mod:`backtest.stores`)."""
        with self._timed("journal"):
            journal = self.heartbeat.journal
            if isinstance(journal, BufferedJournal):
                journal.flush()
            store = self.heartbeat.risk.store
            if isinstance(store, DeferredRiskStore):
                store.flush()

    async def _candle(self, i: int) -> None:
        h = self.history
        ot = h.open_time
        step = h.step_ms
        now = int(ot[i]) + step
        self.clock.set(now)
        # The venue at the candle's last millisecond for the order stage, so the account the
        # decision sees is marked at this candle's close; then at the next candle's open plus the
        # config's latency, where the orders the decision places arrive, stamped by the coordinator's
        # clock (the venue never shows the decision a later price).
        self.service.clock.step_to(now - 1)
        with self._timed("orders"):
            if not self.options.skip_idle:
                await self._orders_and_settlement()
            elif self._busy:
                await self._busy_candle()
        latency = self.config.trading.latency_ms
        if latency:
            self.clock.set(now + latency)
        self.service.clock.step_to(now + latency)
        account = self._account
        if account is None:
            raise RuntimeError("the order stage ran without reading the account")
        tail = self._tail()
        tail.n = i + 1
        snap = self._snapshot(i, now)
        self.heartbeat.outcomes.mature({self.symbol: snap})
        if self.strategy is not None:
            action = await self.strategy.on_candle(self, i, snap, account)
            self.columns.decision(i - self.history.first, snap.close_time_ms, action)
            self._busy = self._busy or action != "HOLD"
        else:
            with self._timed("votes"):
                fanout = await self._fanout(i, snap)
            beat = await self.heartbeat._decide_and_act(
                snap, (f"{self.symbol}-{snap.close_time_ms}", fanout), account
            )
            if beat.placement is not None and not beat.placement.rejected:
                # the live order worker wakes on a placement: a filled entry gets its bracket now
                with self._timed("orders"):
                    await self.exchange.monitor.run_pending()
            self._record(i, beat)
        with self._timed("risk"):
            risk = self.heartbeat.risk
            risk.on_quorum(len(fanout.votes) if self.strategy is None else 1, now)
            risk.on_equity(account.equity, account.unrealised_pnl, now)
        qty, notional = self._position
        self.columns.equity(
            i - self.history.first,
            snap.close_time_ms,
            account.equity,
            qty,
            notional,
            self._fees,
            self._funding,
        )

    async def _candle_end(self, i: int) -> None:
        """After the span: the venue moves to the next candle's close so the last orders settle."""
        if not self._busy:
            return
        ot = self.history.open_time
        if i < len(ot):
            now = int(ot[i]) + self.history.step_ms
            self.clock.set(now)
            self.service.clock.step_to(now)
            await self._orders_and_settlement()

    async def _fanout(self, i: int, snap: MarketSnapshot) -> FanOut:
        if self.http_models is not None:
            return (await self.heartbeat._fan_out(snap))[1]
        if self.votes is None:
            raise RuntimeError("a backtest needs recorded votes or model servers")
        return self.votes.fanout(i)

    def on_venue_event(self, account: str, _event: dict[str, Any]) -> None:
        """The venue's user-data events (what the live user stream carries), counted."""
        if account == ACCOUNT:
            self._venue_events += 1

    def _order_state(self) -> tuple[Any, ...]:
        """What the order layer holds: live orders (state, fills, trigger) and open intents."""
        store = self.exchange.store
        return (
            tuple((o.client_order_id, o.state, o.executed_qty, o.triggered_ms) for o in store.live_orders()),
            tuple((i.intent_id, i.status) for i in store.open_intents()),
        )

    def _quiet(self) -> bool:
        """Whether a full order pass could only repeat the last one, which changed nothing.

        It could when the venue sent no event since the last pass ended (no order changed, no fill,
        no funding), that pass left the order layer as it found it and settled no trade, the order
        layer is still as that pass left it (no entry placed since), and nothing the order layer
        does by the clock is due: no order triggered and waiting for its fill, no recently closed
        order left to back-fill, no follow-up queued (re-query, bracket or position check), nothing
        in flight or in reconciliation.  The maker entries' deadlines are checked on every candle
        anyway (:meth:`_busy_candle`)."""
        manager = self.exchange.manager
        if (
            self._venue_events != self._events_at_pass
            or self._pass_changed
            or manager.inflight
            or manager.for_reconciliation
            or manager.corrected
            or manager.dirty
            or manager.requery
            or manager.position_checks
            or self.heartbeat.trades.failures  # closed intents whose settlement is retried
            or manager.tracker.recently_closed(self.clock.now_ms())
            or any(o.triggered_ms is not None for o in manager.tracker.active.values())
        ):
            return False
        if self.exchange.store.connection.total_changes == self._writes_at_pass:
            return True  # nothing written to the order store since: its state is the same
        return self._order_state() == self._state_at_pass

    async def _busy_candle(self) -> None:
        """The order stage of a candle with something open: the account first (the venue processes
        the candle when asked, and sends its events then), the maker entries' deadlines (a timed-out
        entry is cancelled or replaced), then the full pass unless the candle is still quiet."""
        if self._quiet():
            self._account = await self._fetch_account()
            self._count_income()
            if self._quiet():
                await self.heartbeat.entries.check()
                if self._quiet():
                    return
        await self._orders_and_settlement()

    async def _orders_and_settlement(self) -> None:
        hb = self.heartbeat
        before = self._order_state() if self.options.skip_idle else None
        trades = self._trades_settled
        await hb.entries.check()
        await self.exchange.monitor.poll_active()
        await self.exchange.monitor.run_pending()  # the live order worker's follow-ups
        await self.exchange.monitor.sweep()
        self._account = await self._fetch_account()
        with self._timed("settlement"):
            self._trades_settled += len(await hb.settle_trades({}))
        self._count_income()
        manager = self.exchange.manager
        self._busy = bool(manager.tracker.active) or any(
            i.symbol == self.symbol for i in self.exchange.store.open_intents()
        )
        if before is not None:
            self._writes_at_pass = self.exchange.store.connection.total_changes
            self._state_at_pass = self._order_state()
            self._pass_changed = self._state_at_pass != before or self._trades_settled != trades
            self._events_at_pass = self._venue_events

    async def settle_now(self, rounds: int = 4) -> None:
        """The order stages at once, within a candle (a strategy that closes before it re-enters): as
        many rounds as the order layer needs to close the intent (the close fills, then the sweep
        cancels the bracket's legs, then the settlement), at most ``rounds``."""
        for _ in range(rounds):
            await self._orders_and_settlement()
            if not self._busy:
                return

    async def _fetch_account(self) -> AccountView:
        balances = await self.exchange.get_account_balance()
        positions = await self.exchange.get_open_positions()
        qty = sum((p.positionAmt for p in positions if p.symbol == self.symbol), Decimal(0))
        notional = sum((p.notional for p in positions if p.symbol == self.symbol), Decimal(0))
        self._position = (float(qty), float(notional))
        return account_view(balances, positions, self.config.exchange.leverage)

    def _count_income(self) -> None:
        """Fees and funding paid so far, from the venue's income ledger: the rows after the last one
        counted (by ``tran_id``, ascending), read from its end, so each call costs what is new."""
        ledger = self.service.engine.incomes.get(ACCOUNT, [])
        start = len(ledger)
        while start > 0 and ledger[start - 1].tran_id > self._income_seen:  # the new rows, at its end
            start -= 1
        for row in ledger[start:]:
            if row.income_type == "COMMISSION":
                self._fees -= row.income
            elif row.income_type == "FUNDING_FEE":
                self._funding -= row.income
            self._income_seen = row.tran_id

    def _tail(self) -> _Tail:
        tail = self.heartbeat.outcomes.market.tails[self.symbol]
        if not isinstance(tail, _Tail):
            raise RuntimeError("the market's candle tail is not the backtest's")
        return tail

    def _snapshot(self, i: int, now: int) -> MarketSnapshot:
        h = self.history
        if self._features is None:
            raise RuntimeError("a snapshot before the run read the features")
        values, finite = self._features.row(i)
        if finite:
            features = dict(zip(self._feature_names, values, strict=True))
        else:  # as the live snapshot: the features that are finite
            features = {k: v for k, v in zip(self._feature_names, values, strict=True) if math.isfinite(v)}
        close = float(self._tail()._close[i])
        price = Decimal(repr(close))
        open_ms = int(h.open_time[i])
        rate = float(self.service.feed.last_funding_rate(self.symbol, now)) if self.options.funding else 0.0
        return MarketSnapshot(
            symbol=self.symbol,
            interval=h.interval,
            taken_ms=now,
            server_ms=now,
            open_time_ms=open_ms,
            close_time_ms=open_ms + h.step_ms - 1,
            close=close,
            mark_price=price,
            last_price=price,
            funding_rate=rate,
            next_funding_ms=(now // FUNDING_INTERVAL_MS + 1) * FUNDING_INTERVAL_MS,
            features=features,
            candles=[],
            candle_count=i + 1,
            new_candles=1,
        )

    def _record(self, i: int, beat: SymbolBeat) -> None:
        d = beat.decision
        if beat.risk is None:
            risk = ""
        elif beat.risk.approved:
            risk = "approved"
        else:
            risk = "refused:" + ",".join(r.value for r in beat.risk.reasons)
        if self.votes is not None:
            versions = self.votes.versions_at(i)
        else:  # over HTTP: the versions the servers answered with
            versions = ",".join(
                f"{r.server_id}={r.response.model_version}"
                for r in beat.fanout.results
                if r.response is not None
            )
        if beat.placement is not None and not beat.placement.rejected:
            entry = beat.placement.entry
            style = "maker" if entry.type.value == "LIMIT" else "taker"
            self.entry_info[entry.intent_id] = (style, versions)
            self._busy = True
        self.columns.decision(
            i - self.history.first,
            d.timestamp_ms,
            d.action.value,
            d.probability,
            d.confidence,
            d.expected_value_bps,
            d.size_fraction,
            ",".join(r.value for r in d.reasons),
            risk,
            versions,
            {v.model_id: v.prob_up for v in beat.fanout.votes},
        )

    # ------------------------------------------------------------------ result

    def _result(self, elapsed_s: float) -> BacktestResult:
        h = self.history
        span = h.span()
        model_ids = self.columns.model_ids
        horizon_bars = max(1, self.config.trading.horizon_minutes * 60_000 // h.step_ms)
        close = h.candles["close"].to_numpy(np.float64)
        decisions = self.columns.decisions(self.symbol, outcomes(close, h.first, h.stop, horizon_bars))
        trades = self._trades()
        equity = self.columns.equity_frame()
        t = self.config.trading
        candles_n = max(1, h.stop - h.first)
        stage_us = {k: v * 1e6 / candles_n for k, v in self.stage_s.items()} if self.options.timing else {}
        result = BacktestResult(
            symbol=self.symbol,
            interval=h.interval,
            start_ms=int(h.open_time[h.first]),
            end_ms=int(h.open_time[h.stop - 1]) + h.step_ms,
            initial_equity_usd=float(self.options.initial_equity),
            costs=Costs(t.maker_fee_bps, t.taker_fee_bps, t.slippage_bps, t.entry, t.latency_ms),
            candles=span,
            equity=equity,
            trades=trades,
            decisions=decisions,
            strategy=strategy_name(self.strategy),
            funding=self._funding_settlements() if self.options.funding else None,
            stage_us=stage_us,
            meta={
                "candles": candles_n,
                "elapsed_s": elapsed_s,
                "candles_per_s": candles_n / elapsed_s if elapsed_s > 0 else math.inf,
                "skip_idle": self.options.skip_idle,
                "models": model_ids,
                "fidelity": "http" if self.http_models is not None else "fast",
            },
        )
        result.check()
        return result

    def _funding_settlements(self) -> pd.DataFrame:
        """Every funding time strictly inside the span with the rate the venue charges then (the
        shipped rate, else the venue's default): what a position held across it pays."""
        h = self.history
        start = int(h.open_time[h.first])
        end = int(h.open_time[h.stop - 1]) + h.step_ms
        times = range((start // FUNDING_INTERVAL_MS + 1) * FUNDING_INTERVAL_MS, end, FUNDING_INTERVAL_MS)
        feed = self.service.feed
        return pd.DataFrame(
            {
                "funding_ms": np.array(times, dtype=np.int64),
                "rate": np.array([float(feed.funding_rate(self.symbol, t)) for t in times], dtype=np.float64),
            }
        )

    def _model_ids(self) -> list[str]:
        """The models whose votes are recorded (``p:<id>`` columns)."""
        if self.votes is not None:
            return self.votes.model_ids
        if self.http_models is not None:
            return [m.id for m in self.config.model_servers]
        return []

    def _trades(self) -> pd.DataFrame:
        records = []
        for n, t in enumerate(self.heartbeat.journal.trades(0), start=1):
            style, versions = self.entry_info.get(t.intent_id, ("taker", ""))
            entry_notional = t.entry_price * t.qty
            pnl = t.net_pnl
            records.append(
                (
                    n,
                    t.symbol,
                    t.side,
                    float(t.qty),
                    t.entry_ms,
                    float(t.entry_price),
                    t.exit_ms,
                    float(t.exit_price),
                    t.exit_reason,
                    float(t.realised_pnl),
                    float(t.fees),
                    float(t.funding),
                    float(pnl),
                    float(pnl / entry_notional * BPS) if entry_notional else 0.0,
                    style,
                    versions,
                )
            )
        return pd.DataFrame(records, columns=list(TRADE_COLUMNS))

    async def close(self) -> None:
        """Close the exchange client, the order store, the venue and the databases."""
        await self.heartbeat.outcomes.close(1.0)
        if self.http_models is not None:
            await self.http_models.close()
        await self.exchange.client.close()
        self.exchange.store.close()
        if self.ensemble_store is not None:
            self.ensemble_store.close()
        self.service.close()
        self.conn.close()
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)


def _scratch_root() -> str | None:
    """Memory-backed ``/dev/shm`` when there is one: the run's databases are thrown away, and their
    commits (the order store syncs every transition to disk) would otherwise cost most of the run."""
    shm = Path("/dev/shm")  # nosec B108 # only the parent of mkdtemp's private directory
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


SCRATCH_PREFIX = "xylen-backtest-"
OWNER = "owner"
"""The file in a run's scratch folder naming the process that made it."""


def sweep_stale_scratch(root: Path) -> list[Path]:
    """Remove the scratch folders under ``root`` whose owning process is gone (killed before it could
    clean up: in ``/dev/shm`` they would hold their megabytes of memory until a reboot); returns
    them.  A folder without an owner file, or whose owner still runs, is left alone."""
    removed: list[Path] = []
    for folder in root.glob(SCRATCH_PREFIX + "*"):
        try:
            pid = int((folder / OWNER).read_text().strip())
        except (OSError, ValueError):
            continue  # not one of ours, someone else's, or being set up
        if pid == os.getpid() or pid_alive(pid):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        logger.info("removed %s, scratch of a run that ended without cleaning up (pid %d)", folder, pid)
        removed.append(folder)
    return removed


def _throwaway(conn: sqlite3.Connection) -> sqlite3.Connection:
    """``conn`` with no sync at all: a backtest's databases are thrown away at its end, so a crash
    loses nothing worth keeping, and the live settings' syncs would cost more than the pipeline."""
    conn.execute("PRAGMA synchronous=OFF")
    return conn


def latency_problem(latency_ms: int, interval: str, step_ms: int) -> str | None:
    """Why ``trading.latency_ms`` cannot be run on ``interval`` candles, or None: it must end within
    the candle after the decision (the next decision's order stage reads the venue at that candle's
    last millisecond)."""
    if latency_ms < step_ms:
        return None
    return (
        f"trading.latency_ms: {latency_ms} ms does not end within a {interval} candle ({step_ms} ms):"
        " a decision's orders would arrive after the next decision"
    )


def venue_config(
    config: XylenConfig, db_path: Path, start_ms: int, history: MarketHistory, options: RunOptions
) -> ServiceConfig:
    """The paper exchange's settings from the config's costs (fees, slippage) and the run's equity."""
    t = config.trading
    return ServiceConfig(
        db_path=db_path,
        symbols=(history.symbol,),
        interval=history.interval,
        start_ms=start_ms,
        balance=options.initial_equity,
        taker_fee=Decimal(repr(t.taker_fee_bps)) / BPS,
        maker_fee=Decimal(repr(t.maker_fee_bps)) / BPS,
        slippage_bps=Decimal(repr(t.slippage_bps)),
        default_leverage=config.exchange.leverage,
        default_funding_rate=Decimal(0) if not options.funding else ServiceConfig.default_funding_rate,
        synchronous="NORMAL",
    )


async def compose(
    config: XylenConfig,
    history: MarketHistory,
    *,
    votes: VoteBook | None = None,
    strategy: Strategy | None = None,
    http_models: ModelClients | None = None,
    options: RunOptions | None = None,
) -> Run:
    """Build one run the way :mod:`coordinator.app` builds a coordinator (module docstring)."""
    options = options or RunOptions()
    problem = latency_problem(config.trading.latency_ms, history.interval, history.step_ms)
    if problem is not None:
        raise ValueError(problem)
    if options.work_dir is None:
        root = _scratch_root()
        sweep_stale_scratch(Path(root if root is not None else tempfile.gettempdir()))
        work = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=root))
        (work / OWNER).write_text(f"{os.getpid()}\n")
    else:
        work = options.work_dir
    work.mkdir(parents=True, exist_ok=True)
    for name in ("venue.db", "xylen.db"):
        for suffix in ("", "-wal", "-shm"):
            (work / (name + suffix)).unlink(missing_ok=True)
    try:
        return await _compose(config, history, work, votes, strategy, http_models, options)
    except BaseException:
        if options.work_dir is None:  # a run that could not be built leaves no scratch folder
            shutil.rmtree(work, ignore_errors=True)
        raise


async def _compose(
    config: XylenConfig,
    history: MarketHistory,
    work: Path,
    votes: VoteBook | None,
    strategy: Strategy | None,
    http_models: ModelClients | None,
    options: RunOptions,
) -> Run:
    start_ms = int(history.open_time[history.first])
    funding = {history.symbol: history.funding} if options.funding and history.funding is not None else None
    feed = ReplayFeed(
        {history.symbol: history.candles},
        history.interval,
        funding,
        venue_config(config, work / "venue.db", start_ms, history, options).default_funding_rate,
    )
    service = PaperExchangeService(
        venue_config(config, work / "venue.db", start_ms, history, options), feed=feed
    )
    clock = InstantClock(start_ms)
    client = BinanceFuturesClient(InProcessTransport(service, clock.now_ms))
    await client.exchange_info()
    _throwaway(service.store._conn)  # the venue's own store: no public handle to its connection
    db_path = work / "xylen.db"
    conn = _throwaway(init_db(db_path, synchronous="NORMAL"))
    store = OrderStore(_throwaway(init_db(db_path, synchronous="NORMAL")), now_ms=clock.now_ms)
    exchange = FuturesExchange(config.exchange, client, store, use_stream=False, symbols=[history.symbol])
    exchange.manager.now_ms = clock.now_ms
    await exchange.ensure_one_way_mode()
    await exchange.set_margin_mode(history.symbol, config.exchange.margin_mode)
    await exchange.set_leverage(history.symbol, config.exchange.leverage)
    # one beat per candle: outcomes one candle apart, whatever the config's heartbeat interval
    journal: Journal
    ensemble_store: EnsembleStore | None = None
    if options.write_behind:  # the ensemble without a store, risk and journal written behind
        ensemble = Ensemble.from_config(config, None, beat_ms=history.step_ms)
        risk = RiskManager.from_config(config, DeferredRiskStore(conn))
        journal = BufferedJournal(conn, ensemble.params)
    else:  # the live stores, every beat committed
        # as live: the ensemble's store on its own connection
        ensemble_store = EnsembleStore(_throwaway(init_db(db_path, synchronous="NORMAL")))
        ensemble = Ensemble.from_config(config, ensemble_store, beat_ms=history.step_ms)
        risk = RiskManager.from_config(config, RiskStore(conn))
        journal = Journal(conn, ensemble.params)
    models = http_models if http_models is not None else ModelClients([], None)
    hb = Heartbeat(
        config,
        clock,
        _Market(history.symbol, history),  # type: ignore[arg-type]
        exchange,
        models,
        ensemble,
        risk,
        journal,
        Metrics(),
    )
    # as the app does: every entry send (a maker entry's market fallback too) checked against the
    # risk manager and the config; the gate is the lock a halt would take (no halt in a backtest)
    hb.entries.guard(lambda: hb.risk, lambda: hb.config, asyncio.Lock())
    scratch = None if options.work_dir is not None else work
    run = Run(
        config, history, votes, strategy, options, service, exchange, hb, clock, conn, http_models, scratch,
        ensemble_store,
    )  # fmt: skip
    service.engine.subscribe(run.on_venue_event)
    return run


async def run_backtest(
    config: XylenConfig,
    history: MarketHistory,
    *,
    votes: VoteBook | None = None,
    strategy: Strategy | None = None,
    http_models: ModelClients | None = None,
    options: RunOptions | None = None,
) -> BacktestResult:
    """Compose, run and close one backtest."""
    log = options.log if options is not None else None
    with log.run(strategy_name(strategy)) if log is not None else nullcontext():
        run = await compose(
            config, history, votes=votes, strategy=strategy, http_models=http_models, options=options
        )
        try:
            return await run.run()
        finally:
            await run.close()


def run_sync(*args: Any, **kwargs: Any) -> BacktestResult:
    """:func:`run_backtest` in a fresh event loop."""
    return asyncio.run(run_backtest(*args, **kwargs))
