"""The backtest's write-behind stores: the live stores' rows, written in batches.

A live coordinator commits every beat (the journal's beat, the risk state, the ensemble's state)
because it may be killed at any moment and must resume from disk.  A backtest cannot be resumed:
its databases are rebuilt for every run, and nothing in the run reads these rows back while it
runs.  So here

* :class:`BufferedJournal` is the journal whose :meth:`Journal.log_beat` and
  :meth:`Journal.log_outcome` (the same code builds the same rows) keep their rows and insert them
  in batches of :attr:`BufferedJournal.batch` beats, one transaction per batch, and at :meth:`flush`;
* :class:`DeferredRiskStore` keeps the risk manager's state in memory (the manager holds it anyway)
  and writes it, with the events it raised, at :meth:`DeferredRiskStore.flush`: the same rows the
  live store would hold after the last beat;
* the ensemble runs without a store (:class:`~coordinator.ensemble.Ensemble` with ``store=None``
  learns exactly as with one; the store is written, never read, while it runs).

The trades table (read by the settlement and the report) is still written at once, in the
settlement's transaction with the risk manager's updates.
"""

from __future__ import annotations

from typing import Any

from coordinator.risk.state import RiskState, RiskStore
from coordinator.storage.journal import BeatRows, Journal
from coordinator.storage.transaction import transaction


class BufferedJournal(Journal):
    """The journal with beats and outcomes written in batches (module docstring)."""

    batch: int = 4096

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._beats: list[BeatRows] = []
        self._outcomes: list[tuple[Any, ...]] = []

    def _keep_beat(self, rows: BeatRows) -> None:
        self._beats.append(rows)
        if len(self._beats) >= self.batch:
            self.flush()

    def _keep_outcome(self, row: tuple[Any, ...]) -> None:
        self._outcomes.append(row)

    def flush(self) -> None:
        """Write what is buffered, beats before the outcomes that refer to them, in one transaction."""
        if not self._beats and not self._outcomes:
            return
        with transaction(self.conn):
            self.write_beats(self._beats)
            self.write_outcomes(self._outcomes)
        self._beats.clear()
        self._outcomes.clear()

    def recent_decisions(self, n: int) -> list[dict[str, Any]]:
        self.flush()
        return super().recent_decisions(n)


class DeferredRiskStore(RiskStore):
    """The risk store, written once at :meth:`flush` (module docstring).

    :meth:`save` leaves the state's pending events in the state (a settlement's rollback restores
    them with it) and reports no reset: no other process shares a backtest's database.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._state: RiskState | None = None

    def save(self, state: RiskState) -> bool:
        self._state = state
        return False

    def flush(self) -> None:
        """Write the last saved state and its events."""
        if self._state is not None:
            RiskStore.save(self, self._state)
