"""Outcome labelling and retrain feedback: what the heartbeat learns from its own decisions.

A decision taken on a new closed candle (the first of each candle per symbol, with at least one
vote) is kept as :class:`Pending` until its horizon (``trading.horizon_minutes``) has closed too.
Then its label (close after the horizon > close at the decision) goes to ``ensemble.observe``
(calibration and weights) and to the journal's ``outcomes``, and the outcome joins a buffer that is
posted, in batches of :attr:`Outcomes.batch`, to every model server's ``/retrain``.  A post is a
tracked background task: the beat never waits for it, and :meth:`Outcomes.close` sends what is left
and waits (bounded) for posts in flight.
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

logger = logging.getLogger(__name__)


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
    buffer: list[WireOutcome] = field(default_factory=list)
    _decided: dict[str, int] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def remember(self, beat_id: str, snap: MarketSnapshot, votes: Sequence[Vote], market: Market) -> None:
        """Keep the first decision on each new closed candle until its horizon closes."""
        if self._decided.get(snap.symbol) == snap.close_time_ms or not votes:
            return
        self._decided[snap.symbol] = snap.close_time_ms
        self.pending.append(
            Pending(beat_id, snap.symbol, snap.close_time_ms, snap.close, tuple(votes), market, snap.features)
        )

    def mature(self, snaps: dict[str, MarketSnapshot]) -> int:
        """Label the pending decisions whose horizon has closed; returns how many."""
        horizon = self.horizon_ms()
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
            self.ensemble().observe(Outcome.from_votes(p.votes, p.market, label, target))
            self.journal.log_outcome(p.beat_id, target, label, exit_price, return_bps)
            self.buffer.append(
                WireOutcome(request_id=p.beat_id, timestamp=p.decision_ms, features=p.features, label=label)
            )
            done += 1
        self.pending = keep
        self.flush()
        return done

    def flush(self, *, force: bool = False) -> None:
        """Post the buffer to ``/retrain`` once it holds a batch (or anything, with ``force``)."""
        if not self.buffer or (len(self.buffer) < self.batch and not force):
            return
        batch, self.buffer = self.buffer, []
        task = asyncio.create_task(self._retrain(batch), name=f"retrain:{len(batch)}")
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

    async def _retrain(self, batch: list[WireOutcome]) -> None:
        try:
            results = await self.models.retrain_all(batch, FEATURE_VERSION)
        except Exception:  # retrain_all reports failures per server; anything else is a bug to log
            logger.exception("posting %d outcomes for retraining failed", len(batch))
            return
        failed = [r.server_id for r in results if not r.ok]
        logger.info("sent %d outcomes to %d server(s) for retraining; failed: %s",
                    len(batch), len(results), failed or "none")  # fmt: skip
