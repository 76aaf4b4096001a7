"""Outcome labelling and retrain feedback: what the heartbeat learns from its own decisions.

A decision taken on a new closed candle (the first of each candle per symbol, with at least one
vote) is kept as :class:`Pending` until every horizon it is labelled at has closed.  The label is
the one of :mod:`xylen.labels` (``close[t+h] > close[t]``):

* at the coordinator's horizon (``trading.horizon_minutes``) it goes to ``ensemble.observe``
  (calibration and weights) and to the journal's ``outcomes``;
* for each model server covering the symbol, at *that server's* horizon (the ``horizon_bars`` and
  ``interval`` of its ``/health``; the coordinator's horizon when the server does not say), and
  only when the move is outside the server's no-trade band (``label_band``): the same rows its
  model was trained on.  Each server's outcomes are buffered and posted, in batches of
  :attr:`Outcomes.batch`, to its ``/retrain``.

A post is a tracked background task: the beat never waits for it, and :meth:`Outcomes.close` sends
what is left and waits (bounded) for posts in flight.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from coordinator.ensemble import Ensemble, Market, Outcome, Vote
from coordinator.model_client import ModelClients
from coordinator.snapshot import MarketData, MarketSnapshot
from coordinator.storage.journal import Journal
from xylen.contract import Outcome as WireOutcome
from xylen.features import FEATURE_VERSION
from xylen.labels import direction, learnable

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Pending:
    """A decision waiting for its horizons to close (the ensemble's and each server's)."""

    beat_id: str
    symbol: str
    decision_ms: int
    entry: float
    votes: tuple[Vote, ...]
    market: Market
    features: dict[str, float]
    observed: bool = False  # labelled at the coordinator's horizon (ensemble and journal)
    servers: dict[str, tuple[int, float]] = field(default_factory=dict)  # id -> (horizon ms, band) left


@dataclass
class Outcomes:
    """Pending decisions, their labels once the horizon closed, and the retrain batches.

    ``ensemble`` and ``horizon_ms`` are read at each use: a reloaded config brings a new ensemble
    and may change the horizon between beats.
    """

    market: MarketData
    models: ModelClients
    journal: Journal
    ensemble: Callable[[], Ensemble]
    horizon_ms: Callable[[], int]
    batch: int = 32
    pending: list[Pending] = field(default_factory=list)
    buffers: dict[str, list[WireOutcome]] = field(default_factory=dict)  # server id -> outcomes
    _decided: dict[str, int] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def remember(self, beat_id: str, snap: MarketSnapshot, votes: Sequence[Vote], market: Market) -> None:
        """Keep the first decision on each new closed candle until its horizon closes."""
        if self._decided.get(snap.symbol) == snap.close_time_ms or not votes:
            return
        self._decided[snap.symbol] = snap.close_time_ms
        pending = Pending(
            beat_id, snap.symbol, snap.close_time_ms, snap.close, tuple(votes), market, snap.features
        )
        for state in self.models.targets(snap.symbol):
            label = state.label
            pending.servers[state.config.id] = (
                (label.horizon_ms, label.band) if label is not None else (self.horizon_ms(), 0.0)
            )
        self.pending.append(pending)

    def _exit_close(self, symbol: str, exit_ms: int) -> float | None:
        """The close of the candle closing at ``exit_ms`` (or the first after a gap); None if not yet."""
        tail = self.market.tails[symbol]
        wanted = exit_ms + 1 - self.market.step_ms  # that candle's open time
        index = int(tail.open_time.searchsorted(wanted))
        if index >= len(tail) or (index == 0 and int(tail.open_time[0]) > wanted):
            return None  # not closed yet, or no longer in the tail
        return float(tail.columns["close"][index])

    def mature(self, snaps: dict[str, MarketSnapshot]) -> int:
        """Label what has matured; returns how many decisions were labelled at the coordinator's
        horizon (ensemble and journal).  Server outcomes are buffered as their horizons close."""
        horizon = self.horizon_ms()
        keep: list[Pending] = []
        done = 0
        for p in self.pending:
            snap = snaps.get(p.symbol)
            closed = snap.close_time_ms if snap is not None else -1
            if not p.observed and closed >= p.decision_ms + horizon:
                exit_price = self._exit_close(p.symbol, p.decision_ms + horizon)
                if exit_price is not None:
                    target = p.decision_ms + horizon
                    label = direction(p.entry, exit_price)
                    return_bps = (exit_price / p.entry - 1.0) * 1e4
                    self.ensemble().observe(Outcome.from_votes(p.votes, p.market, label, target))
                    self.journal.log_outcome(p.beat_id, target, label, exit_price, return_bps)
                    p.observed = True
                    done += 1
            for sid, (server_horizon, band) in list(p.servers.items()):
                if closed < p.decision_ms + server_horizon:
                    continue
                exit_price = self._exit_close(p.symbol, p.decision_ms + server_horizon)
                if exit_price is None:
                    continue
                del p.servers[sid]
                if learnable(p.entry, exit_price, band):  # outside the band: a row the model learns
                    self.buffers.setdefault(sid, []).append(
                        WireOutcome(
                            request_id=p.beat_id,
                            timestamp=p.decision_ms,
                            features=p.features,
                            label=direction(p.entry, exit_price),
                        )
                    )
            if not p.observed or p.servers:
                keep.append(p)
        self.pending = keep
        self.flush()
        return done

    @property
    def buffered(self) -> int:
        """Outcomes waiting to be posted, over all servers."""
        return sum(len(b) for b in self.buffers.values())

    def flush(self, *, force: bool = False) -> None:
        """Post each server's buffer to its ``/retrain`` once it holds a batch (or anything, with
        ``force``)."""
        for sid, buffer in list(self.buffers.items()):
            if not buffer or (len(buffer) < self.batch and not force):
                continue
            self.buffers[sid] = []
            task = asyncio.create_task(self._retrain(sid, buffer), name=f"retrain:{sid}:{len(buffer)}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def close(self, timeout_s: float = 5.0) -> None:
        """Send the buffered outcomes and wait (bounded) for the retrain posts in flight."""
        self.flush(force=True)
        if self._tasks:
            _done, pending = await asyncio.wait(self._tasks, timeout=timeout_s)
            for task in pending:
                logger.warning("retrain post %s still running at shutdown: cancelled", task.get_name())
                task.cancel()

    async def _retrain(self, server_id: str, batch: list[WireOutcome]) -> None:
        try:
            results = await self.models.retrain_all(batch, FEATURE_VERSION, [server_id])
        except Exception:  # retrain_all reports failures per server; anything else is a bug to log
            logger.exception("posting %d outcomes to %s for retraining failed", len(batch), server_id)
            return
        failed = [r.server_id for r in results if not r.ok]
        logger.info("sent %d outcomes to %s for retraining; failed: %s",
                    len(batch), server_id, failed or "none")  # fmt: skip
