"""Replay a live coordinator's journal through the backtest's decision pipeline, decision by decision.

The journal (:mod:`coordinator.storage.journal`) holds, for every beat, the market the ensemble saw
(``snapshots``), every vote with its raw probability, bracket, model version and backend
(``model_predictions``), the decision and the config values it was made with (``decisions``), and
each decision's label once its horizon closed (``outcomes``).  The replay rebuilds what a backtest
runs at step 5 (:mod:`backtest.engine`): a fresh :class:`~coordinator.ensemble.Ensemble` from the
config, asked :meth:`~coordinator.ensemble.Ensemble.decide` with the logged votes on the logged
market, beat after beat in time order, and fed each logged outcome (``observe``) before the first
beat that closes at or after the outcome's time, as the live heartbeat labels its decisions
(:meth:`coordinator.outcomes.Outcomes.mature`) before it decides.  Calibration, weights and the
skill pool therefore evolve as they did live, and every decision is compared with the logged one,
field by field.  Beside it, each decision is also recomputed from its own logged calibrated
probabilities and weights (:func:`~coordinator.storage.journal.recompute_decision`), which needs no
state at all.

What must hold for the pipeline's decisions to match: the ensemble's state was empty when the
journal began (a coordinator started on a fresh database), the config's ``ensemble`` and ``trading``
sections and model servers are those of the run (a beat whose logged :class:`DecisionParams`
differ from the config's is reported), and no outcome was lost (a journal pruned of old rows starts
from other state).  ``--from``/``--to`` only choose the decisions reported: the state is always
rebuilt from the journal's first beat.

The database is opened read-only; the replay's ensemble keeps its state in memory.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from coordinator.ensemble import Ensemble, EnsembleStore
from coordinator.ensemble.resolve import Resolved
from coordinator.ensemble.types import Action, Decision, Market, Outcome, Vote, fingerprint
from coordinator.storage.db import init_db
from coordinator.storage.journal import logged_decision, recompute_decision
from xylen.config.schema import XylenConfig
from xylen.errors import UsageError

FIELDS = (
    "action", "probability", "confidence", "expected_value_bps", "size_fraction", "stop_loss",
    "take_profit", "disagreement", "reasons",
)  # fmt: skip
REL_TOL = 1e-9  # floats are logged as binary64 and read back bit for bit; this allows only rounding
ABS_TOL = 1e-12


@dataclass(frozen=True)
class Difference:
    """One field of one decision that differs: ``check`` is ``pipeline`` or ``log``."""

    beat_id: str
    ts_ms: int
    symbol: str
    check: str
    name: str
    logged: object
    replayed: object


@dataclass
class ReplayReport:
    """What the replay compared and what differed."""

    beats: int = 0  # decisions compared (within --from/--to)
    outcomes: int = 0  # outcomes fed to the ensemble (all, from the journal's start)
    params_differ: int = 0  # compared beats logged with other DecisionParams than the config's
    differences: list[Difference] = field(default_factory=list)

    @property
    def diverged(self) -> list[str]:
        """The beat ids with at least one difference, in time order."""
        seen: dict[str, None] = {}
        for d in self.differences:
            seen.setdefault(d.beat_id, None)
        return list(seen)


def open_journal(path: Path) -> sqlite3.Connection:
    """The journal database at ``path``, read-only; exit 2 when it is missing or has no journal."""
    if not path.is_file():
        raise UsageError(f"--db {path}: no such file")
    conn = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:  # not SQLite at all, or a damaged file
        conn.close()
        raise UsageError(f"--db {path}: not a readable SQLite database ({exc})") from exc
    missing = {"snapshots", "model_predictions", "decisions", "outcomes"} - tables
    if missing:
        conn.close()
        raise UsageError(f"--db {path}: not a coordinator database (no {', '.join(sorted(missing))} table)")
    return conn


def _beats(
    conn: sqlite3.Connection, symbol: str | None
) -> Iterator[tuple[str, int, str, Market, str | None]]:
    """``(beat_id, ts_ms, symbol, market, params json)`` of every logged decision, oldest first."""
    sql = (
        "SELECT d.beat_id, s.ts_ms, s.symbol, s.price, s.atr, s.funding_rate, s.next_funding_ms,"
        " s.funding_interval_hours, d.params FROM decisions d JOIN snapshots s USING (beat_id)"
    )
    args: tuple[str, ...] = ()
    if symbol is not None:
        sql += " WHERE s.symbol = ?"
        args = (symbol,)
    for row in conn.execute(sql + " ORDER BY s.ts_ms, d.rowid", args):
        market = Market(
            timestamp_ms=int(row[1]),
            price=float(row[3]),
            funding_rate=float(row[5]),
            atr=None if row[4] is None else float(row[4]),
            next_funding_ms=None if row[6] is None else int(row[6]),
            funding_interval_hours=float(row[7]),
        )
        yield str(row[0]), int(row[1]), str(row[2]), market, row[8]


def logged_votes(conn: sqlite3.Connection, beat_id: str) -> tuple[Vote, ...]:
    """The votes the ensemble was given at ``beat_id``: the answered predictions, in their order, as
    the model client builds them (a failed server gave no vote; the journal logs it for the record)."""
    rows = conn.execute(
        "SELECT model_id, model_version, backend, prob_up, action, stop_loss, take_profit, latency_ms"
        " FROM model_predictions WHERE beat_id = ? AND status = 'ok' ORDER BY position",
        (beat_id,),
    ).fetchall()
    return tuple(
        Vote(
            model_id=str(r[0]),
            prob_up=math.nan if r[3] is None else float(r[3]),
            action=Action(r[4]),
            stop_loss=None if r[5] is None else float(r[5]),
            take_profit=None if r[6] is None else float(r[6]),
            latency_ms=float(r[7]),
            fingerprint=fingerprint(str(r[2]), str(r[1])),
        )
        for r in rows
    )


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)
    return a == b


def compare(logged: Resolved, replayed: Decision | Resolved) -> list[tuple[str, object, object]]:
    """``(field, logged, replayed)`` of each field of :data:`FIELDS` that differs."""
    out = []
    for name in FIELDS:
        a, b = getattr(logged, name), getattr(replayed, name)
        if name == "reasons":
            a, b = [r.value for r in a], [r.value for r in b]
        elif name == "action":
            a, b = a.value, b.value
        if not _same(a, b):
            out.append((name, a, b))
    return out


def replay(
    conn: sqlite3.Connection,
    config: XylenConfig,
    *,
    start_ms: int | None = None,
    end_ms: int | None = None,
    symbol: str | None = None,
) -> ReplayReport:
    """Replay the journal on ``conn`` (module docstring); the decisions of ``[start_ms, end_ms)``
    are compared."""
    state = init_db(":memory:", synchronous="NORMAL")
    ensemble = Ensemble.from_config(config, EnsembleStore(state))
    params = ensemble.params.to_json()
    outcomes = conn.execute(
        "SELECT o.beat_id, o.outcome_ms, o.label FROM outcomes o JOIN decisions d USING (beat_id)"
        " JOIN snapshots s USING (beat_id) ORDER BY o.outcome_ms, s.ts_ms, d.rowid"
    ).fetchall()
    report = ReplayReport()
    seen: dict[str, tuple[tuple[Vote, ...], Market]] = {}  # decided beats, until their outcome
    k = 0
    for beat_id, ts_ms, sym, market, logged_params in _beats(conn, symbol):
        while k < len(outcomes) and int(outcomes[k][1]) <= ts_ms:
            oid, outcome_ms, label = outcomes[k]
            k += 1
            decided = seen.pop(str(oid), None)
            if decided is None:
                continue  # another symbol's, filtered out
            votes, at = decided
            ensemble.observe(Outcome.from_votes(votes, at, int(label), int(outcome_ms)))
            report.outcomes += 1
        votes = logged_votes(conn, beat_id)
        decision = ensemble.decide(votes, market)
        seen[beat_id] = (votes, market)
        if (start_ms is not None and ts_ms < start_ms) or (end_ms is not None and ts_ms >= end_ms):
            continue
        report.beats += 1
        if logged_params is not None and not _same_params(logged_params, params):
            report.params_differ += 1
        logged = logged_decision(conn, beat_id)
        for name, a, b in compare(logged, decision):
            report.differences.append(Difference(beat_id, ts_ms, sym, "pipeline", name, a, b))
        if logged_params is not None:
            for name, a, b in compare(logged, recompute_decision(conn, beat_id)):
                report.differences.append(Difference(beat_id, ts_ms, sym, "log", name, a, b))
    state.close()
    return report


def _same_params(logged: str, configured: str) -> bool:
    return bool(json.loads(logged) == json.loads(configured))
