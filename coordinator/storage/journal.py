"""The data logger: every heartbeat's inputs, votes, decision, risk answer and order, in SQLite.

Public API::

    Journal(conn, params=None)
    journal.log_beat(snapshot, votes, decision, risk_result=None, order=None, params=None)
    journal.log_outcome(beat_id, outcome_ms, label, exit_price, return_bps, realised_pnl=None)
    journal.write_beats(rows) / journal.write_outcomes(rows) # insert rows those build (caller's transaction)
    journal.log_trade(trade) -> bool          # False when the intent's trade was already logged
    journal.log_equity(ts_ms, equity, daily_pnl, unrealised_pnl=0)
    journal.recent_decisions(n) / journal.trades(since_ms) / journal.equity_curve(since_ms)
    journal.log_control(ts_ms, actor, action, detail="", ok=True)   # the dashboard's admin actions
    journal.controls(limit) / journal.entries_paused()
    journal.last_reconciliation() -> LastReconciliation | None
    recompute_decision(conn, beat_id) -> Recomputed   # from the log alone

One beat is written in ONE transaction (:func:`coordinator.storage.transaction.transaction`:
``BEGIN IMMEDIATE`` ... ``COMMIT``, or a savepoint inside a caller's transaction): a failure part way
leaves nothing of that beat.  The tables are those of
migration ``0005_data_logger.sql``; the admin actions are in ``control_actions`` (``0008``), and the
last reconciliation is read from the tables of ``0002_reconciliation.sql``.

Replay: the log holds everything :meth:`Ensemble.decide` used, so a past decision can be recomputed
without the ensemble: the market inputs (``snapshots``), each vote's raw probability, calibrated
probability, normalised weight and bracket prices in the order given (``model_predictions``), and the
config values (:class:`DecisionParams`, JSON in ``decisions.params``).  Calibrators and Bayesian
weights are state that changes with every outcome, which is why their results (calibrated
probabilities and weights) are logged rather than the state.  For a decision of the meta-learner
(``source = 'meta'``) or of the skill-weighted pool (``source = 'pool'``: the base rate's share and
the pool's recalibration are not in the vote rows) the probability is logged but not recomputed;
the bracket, EV, size and gates are recomputed from it.  Votes of one model served twice (same
backend family and model version) count as one for the quorum.
"""

from __future__ import annotations

import functools
import json
import math
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, Protocol

import orjson

from coordinator.ensemble.gating import log_odds_average, weighted_disagreement
from coordinator.ensemble.resolve import DecisionParams, Resolved, resolve
from coordinator.ensemble.types import Action, Decision, HoldReason, Market, Vote, fingerprint
from coordinator.storage.transaction import transaction

if TYPE_CHECKING:
    from coordinator.risk.checks import Violation
    from coordinator.risk.manager import RiskResult

PredictionStatus = Literal["ok", "timeout", "error"]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one heartbeat saw: ``market`` is exactly what was given to :meth:`Ensemble.decide`."""

    beat_id: str
    symbol: str
    market: Market
    mark_price: float | None = None
    features: Mapping[str, float] = field(default_factory=dict)
    feature_version: str = ""

    @property
    def timestamp_ms(self) -> int:
        return self.market.timestamp_ms


@dataclass(frozen=True, slots=True)
class Prediction:
    """One model server's answer with what the ensemble's :class:`Vote` does not carry.

    A server that timed out or failed is logged with ``status`` ``timeout``/``error`` and a vote
    whose ``prob_up`` is NaN (the ensemble counts it as missing).
    """

    vote: Vote
    model_version: str = ""
    backend: str = ""
    status: PredictionStatus = "ok"
    error: str | None = None


@dataclass(frozen=True, slots=True)
class TradeRecord:
    """A closed round trip.  Money and quantities are ``Decimal``; ``funding`` paid is positive."""

    intent_id: str
    symbol: str
    side: Literal["LONG", "SHORT"]
    entry_ms: int
    exit_ms: int
    entry_price: Decimal
    exit_price: Decimal
    qty: Decimal
    realised_pnl: Decimal
    fees: Decimal
    funding: Decimal
    exit_reason: str

    @property
    def net_pnl(self) -> Decimal:
        return self.realised_pnl - self.fees - self.funding


Recomputed = Resolved  # a decision recomputed from the log, compared with the logged one


@dataclass(frozen=True, slots=True)
class ControlAction:
    """One admin action (``control_actions`` row)."""

    ts_ms: int
    actor: str
    action: str
    detail: str
    ok: bool


@dataclass(frozen=True, slots=True)
class LastReconciliation:
    """The newest finished reconciliation run and its differences ``(kind, symbol, detail)``."""

    finished_ms: int
    differences: tuple[tuple[str, str | None, str], ...]


class _HasClientOrderId(Protocol):
    @property
    def client_order_id(self) -> str: ...


def _real(value: float | None) -> float | None:
    """A float for a REAL column: NaN becomes NULL explicitly (SQLite would do the same)."""
    if value is None or math.isnan(value):
        return None
    return float(value)


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _used_flags(votes: Sequence[Vote], decision: Decision | None) -> list[int | None]:
    """For each vote, the index in ``decision.votes`` of the weighted vote it became (None: unused).

    The ensemble keeps the first usable vote per model id, grouped by model (twins that share a
    fingerprint sit together, so the weighted votes need not be in the votes' order): a vote is
    matched by its model id, the first usable vote of an id taking it.
    """
    out: list[int | None] = [None] * len(votes)
    if decision is None:
        return out
    index = {weighted.model_id: j for j, weighted in enumerate(decision.votes)}
    taken: set[int] = set()
    for i, vote in enumerate(votes):
        j = index.get(vote.model_id)
        if j is not None and vote.usable and j not in taken:
            out[i] = j
            taken.add(j)
    if len(taken) != len(decision.votes) or len(index) != len(decision.votes):
        raise ValueError("the decision's votes are not the given votes (was it decided on other votes?)")
    return out


@functools.lru_cache(maxsize=256)
def _reasons_json(reasons: tuple[HoldReason, ...]) -> str:
    """A decision's HOLD reasons as logged (few distinct sets, so each is encoded once)."""
    return json.dumps([r.value for r in reasons])


def _violations_json(violations: Sequence[Violation]) -> str:
    """A risk answer's violations as logged."""
    if not violations:
        return "[]"
    return json.dumps([{"reason": v.reason.value, "detail": v.detail} for v in violations])


@dataclass(frozen=True, slots=True)
class BeatRows:
    """The rows of one beat: its snapshot, its votes and (when decided) its decision."""

    snapshot: tuple[Any, ...]
    predictions: list[tuple[Any, ...]]
    decision: tuple[Any, ...] | None


class Journal:
    """Writes beats, outcomes, trades and equity to the data logger's tables; reads them back."""

    def __init__(self, conn: sqlite3.Connection, params: DecisionParams | None = None) -> None:
        self.conn = conn
        self.params = params

    # ------------------------------------------------------------------ writes

    def log_beat(
        self,
        snapshot: Snapshot,
        votes: Sequence[Vote | Prediction],
        decision: Decision | None,
        risk_result: RiskResult | None = None,
        order: _HasClientOrderId | str | None = None,
        *,
        params: DecisionParams | None = None,
    ) -> None:
        """Everything of one beat in one transaction: snapshot, one row per vote, the decision."""
        predictions = [v if isinstance(v, Prediction) else Prediction(v) for v in votes]
        used = _used_flags([p.vote for p in predictions], decision)
        chosen = params if params is not None else self.params
        m = snapshot.market
        snapshot_row = (
            snapshot.beat_id,
            m.timestamp_ms,
            snapshot.symbol,
            m.price,
            _real(snapshot.mark_price),
            _real(m.atr),
            m.funding_rate,
            m.next_funding_ms,
            m.funding_interval_hours,
            # orjson: the same values as json.dumps (shortest round-trip floats), at a tenth of its cost
            orjson.dumps(dict(snapshot.features), option=orjson.OPT_SORT_KEYS).decode(),
            snapshot.feature_version,
        )
        rows = []
        for position, (pred, index) in enumerate(zip(predictions, used, strict=True)):
            vote = pred.vote
            weighted = decision.votes[index] if decision is not None and index is not None else None
            rows.append(
                (
                    snapshot.beat_id,
                    position,
                    vote.model_id,
                    pred.model_version,
                    pred.backend,
                    pred.status,
                    pred.error,
                    _real(vote.prob_up) if math.isfinite(vote.prob_up) else None,
                    None if weighted is None else weighted.prob_calibrated,
                    None if weighted is None else weighted.weight,
                    0 if weighted is None else 1,
                    vote.action.value,
                    _real(vote.stop_loss),
                    _real(vote.take_profit),
                    float(vote.latency_ms),
                )
            )
        if decision is None:
            self._keep_beat(BeatRows(snapshot_row, rows, None))
            return
        client_order_id = order if isinstance(order, str) or order is None else order.client_order_id
        decision_row = (
            snapshot.beat_id,
            decision.timestamp_ms,
            snapshot.symbol,
            decision.action.value,
            decision.probability,
            decision.confidence,
            _real(decision.expected_value_bps),
            decision.size_fraction,
            _real(decision.stop_loss),
            _real(decision.take_profit),
            decision.disagreement,
            decision.source,
            _reasons_json(decision.reasons),
            None if chosen is None else chosen.to_json(),
            None if risk_result is None else int(risk_result.approved),
            None if risk_result is None else str(risk_result.quantity),
            None if risk_result is None else _violations_json(risk_result.violations),
            client_order_id,
        )
        self._keep_beat(BeatRows(snapshot_row, rows, decision_row))

    def _keep_beat(self, rows: BeatRows) -> None:
        """Write one beat's rows in one transaction (a subclass may batch them: :meth:`write_beats`)."""
        with transaction(self.conn):
            self.write_beats([rows])

    def write_beats(self, beats: Sequence[BeatRows]) -> None:
        """Insert the rows of ``beats`` (the caller holds the transaction), table by table."""
        conn = self.conn
        conn.executemany(
            "INSERT INTO snapshots (beat_id, ts_ms, symbol, price, mark_price, atr, funding_rate,"
            " next_funding_ms, funding_interval_hours, features, feature_version)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [b.snapshot for b in beats],
        )
        conn.executemany(
            "INSERT INTO model_predictions (beat_id, position, model_id, model_version, backend,"
            " status, error, prob_up, prob_calibrated, weight, used, action, stop_loss, take_profit,"
            " latency_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [row for b in beats for row in b.predictions],
        )
        conn.executemany(
            "INSERT INTO decisions (beat_id, ts_ms, symbol, action, probability, confidence, ev_bps,"
            " size_fraction, stop_loss, take_profit, disagreement, source, hold_reasons, params,"
            " risk_approved, risk_quantity, risk_reasons, client_order_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [b.decision for b in beats if b.decision is not None],
        )

    def log_outcome(
        self,
        beat_id: str,
        outcome_ms: int,
        label: int,
        exit_price: float,
        return_bps: float,
        realised_pnl: Decimal | None = None,
    ) -> None:
        """The realised outcome of the decision of ``beat_id`` (replaces an earlier one)."""
        self._keep_outcome(
            (
                beat_id,
                outcome_ms,
                1 if label else 0,
                exit_price,
                return_bps,
                None if realised_pnl is None else str(realised_pnl),
            )
        )

    def _keep_outcome(self, row: tuple[Any, ...]) -> None:
        """Write one ``outcomes`` row in its own transaction (a subclass may batch them)."""
        with transaction(self.conn):
            self.write_outcomes([row])

    def write_outcomes(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Insert (or replace) ``outcomes`` rows (the caller holds the transaction)."""
        self.conn.executemany(
            "INSERT OR REPLACE INTO outcomes (beat_id, outcome_ms, label, exit_price, return_bps,"
            " realised_pnl) VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )

    def log_trade(self, trade: TradeRecord) -> bool:
        """Record a closed round trip; False (nothing written) when its intent is already logged."""
        with transaction(self.conn):
            cursor = self.conn.execute(
                "INSERT INTO trades (intent_id, symbol, side, entry_ms, exit_ms, entry_price, exit_price,"
                " qty, realised_pnl, fees, funding, exit_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (intent_id) DO NOTHING",
                (
                    trade.intent_id,
                    trade.symbol,
                    trade.side,
                    trade.entry_ms,
                    trade.exit_ms,
                    str(trade.entry_price),
                    str(trade.exit_price),
                    str(trade.qty),
                    str(trade.realised_pnl),
                    str(trade.fees),
                    str(trade.funding),
                    trade.exit_reason,
                ),
            )
            return cursor.rowcount == 1

    def log_equity(
        self, ts_ms: int, equity: Decimal, daily_pnl: Decimal, unrealised_pnl: Decimal = Decimal(0)
    ) -> None:
        """One point of the equity curve (replaces a point at the same ``ts_ms``)."""
        with transaction(self.conn):
            self.conn.execute(
                "INSERT OR REPLACE INTO equity (ts_ms, equity, daily_pnl, unrealised_pnl)"
                " VALUES (?, ?, ?, ?)",
                (ts_ms, str(equity), str(daily_pnl), str(unrealised_pnl)),
            )

    # ------------------------------------------------------------------ reads (dashboard)

    def recent_decisions(self, n: int) -> list[dict[str, Any]]:
        """The ``n`` newest decisions, newest first, JSON-ready, with their votes and outcome."""
        rows = self.conn.execute(
            "SELECT d.beat_id, d.ts_ms, d.symbol, d.action, d.probability, d.confidence, d.ev_bps,"
            " d.size_fraction, d.stop_loss, d.take_profit, d.disagreement, d.source, d.hold_reasons,"
            " d.risk_approved, d.risk_quantity, d.risk_reasons, d.client_order_id, s.price,"
            " o.label, o.return_bps FROM decisions d JOIN snapshots s USING (beat_id)"
            " LEFT JOIN outcomes o USING (beat_id) ORDER BY d.ts_ms DESC, d.rowid DESC LIMIT ?",
            (int(n),),
        ).fetchall()
        out: list[dict[str, Any]] = []
        for r in rows:
            votes = self.conn.execute(
                "SELECT model_id, model_version, status, prob_up, prob_calibrated, weight, latency_ms"
                " FROM model_predictions WHERE beat_id = ? ORDER BY position",
                (r[0],),
            ).fetchall()
            out.append(
                {
                    "beat_id": r[0],
                    "timestamp_ms": r[1],
                    "symbol": r[2],
                    "action": r[3],
                    "probability": r[4],
                    "confidence": r[5],
                    "expected_value_bps": r[6],
                    "size_fraction": r[7],
                    "stop_loss": r[8],
                    "take_profit": r[9],
                    "disagreement": r[10],
                    "source": r[11],
                    "reasons": json.loads(r[12]),
                    "risk_approved": None if r[13] is None else bool(r[13]),
                    "risk_quantity": r[14],
                    "risk_reasons": None if r[15] is None else json.loads(r[15]),
                    "client_order_id": r[16],
                    "price": r[17],
                    "outcome_label": r[18],
                    "outcome_return_bps": r[19],
                    "votes": [
                        {
                            "model_id": v[0],
                            "model_version": v[1],
                            "status": v[2],
                            "prob_raw": v[3],
                            "prob": v[4],
                            "weight": v[5],
                            "latency_ms": v[6],
                        }
                        for v in votes
                    ],
                }
            )
        return out

    def trades(self, since_ms: int = 0) -> list[TradeRecord]:
        """Round trips closed at or after ``since_ms``, oldest first."""
        rows = self.conn.execute(
            "SELECT intent_id, symbol, side, entry_ms, exit_ms, entry_price, exit_price, qty, realised_pnl,"
            " fees, funding, exit_reason FROM trades WHERE exit_ms >= ? ORDER BY exit_ms, id",
            (since_ms,),
        ).fetchall()
        return [
            TradeRecord(
                intent_id=r[0],
                symbol=r[1],
                side=r[2],
                entry_ms=r[3],
                exit_ms=r[4],
                entry_price=Decimal(r[5]),
                exit_price=Decimal(r[6]),
                qty=Decimal(r[7]),
                realised_pnl=Decimal(r[8]),
                fees=Decimal(r[9]),
                funding=Decimal(r[10]),
                exit_reason=r[11],
            )
            for r in rows
        ]

    def log_control(self, ts_ms: int, actor: str, action: str, detail: str = "", ok: bool = True) -> None:
        """One admin action (committed at once)."""
        with transaction(self.conn):
            self.conn.execute(
                "INSERT INTO control_actions (ts_ms, actor, action, detail, ok) VALUES (?, ?, ?, ?, ?)",
                (ts_ms, actor, action, detail, int(ok)),
            )

    def controls(self, limit: int = 50) -> list[ControlAction]:
        """The newest ``limit`` admin actions, newest first."""
        rows = self.conn.execute(
            "SELECT ts_ms, actor, action, detail, ok FROM control_actions ORDER BY id DESC LIMIT ?",
            (int(limit),),
        ).fetchall()
        return [ControlAction(int(r[0]), r[1], r[2], r[3], bool(r[4])) for r in rows]

    def entries_paused(self) -> bool:
        """Whether the newest pause or resume action is a pause."""
        row = self.conn.execute(
            "SELECT action FROM control_actions WHERE action IN ('pause', 'resume') AND ok = 1"
            " ORDER BY id DESC LIMIT 1"
        ).fetchone()
        return row is not None and row[0] == "pause"

    def last_reconciliation(self, max_differences: int = 50) -> LastReconciliation | None:
        """The newest finished reconciliation run (None before the first)."""
        run = self.conn.execute(
            "SELECT run_id, finished_ms FROM reconciliation_runs WHERE finished_ms IS NOT NULL"
            " ORDER BY run_id DESC LIMIT 1"
        ).fetchone()
        if run is None:
            return None
        rows = self.conn.execute(
            "SELECT kind, symbol, detail FROM reconciliation_report WHERE run_id = ? ORDER BY id LIMIT ?",
            (run[0], int(max_differences)),
        ).fetchall()
        return LastReconciliation(int(run[1]), tuple((r[0], r[1], r[2]) for r in rows))

    def equity_curve(self, since_ms: int = 0) -> list[tuple[int, Decimal, Decimal]]:
        """``(ts_ms, equity, daily_pnl)`` at or after ``since_ms``, oldest first."""
        rows = self.conn.execute(
            "SELECT ts_ms, equity, daily_pnl FROM equity WHERE ts_ms >= ? ORDER BY ts_ms", (since_ms,)
        ).fetchall()
        return [(int(r[0]), Decimal(r[1]), Decimal(r[2])) for r in rows]


# ---------------------------------------------------------------------- replay


def recompute_decision(conn: sqlite3.Connection, beat_id: str) -> Recomputed:
    """Recompute the decision of ``beat_id`` from the logged rows alone (see the module docstring).

    Raises ``KeyError`` for an unknown beat and ``ValueError`` when the beat was logged without
    :class:`DecisionParams`.
    """
    row = conn.execute(
        "SELECT s.ts_ms, s.price, s.atr, s.funding_rate, s.next_funding_ms, s.funding_interval_hours,"
        " d.params, d.source, d.probability FROM decisions d JOIN snapshots s USING (beat_id)"
        " WHERE d.beat_id = ?",
        (beat_id,),
    ).fetchone()
    if row is None:
        raise KeyError(f"no decision logged for beat {beat_id!r}")
    if row[6] is None:
        raise ValueError(f"beat {beat_id!r} was logged without DecisionParams: it cannot be recomputed")
    market = Market(
        timestamp_ms=int(row[0]),
        price=float(row[1]),
        funding_rate=float(row[3]),
        atr=None if row[2] is None else float(row[2]),
        next_funding_ms=None if row[4] is None else int(row[4]),
        funding_interval_hours=float(row[5]),
    )
    params = DecisionParams.from_json(row[6])
    votes = conn.execute(
        "SELECT prob_calibrated, weight, stop_loss, take_profit, model_id, model_version, backend"
        " FROM model_predictions WHERE beat_id = ? AND used = 1 ORDER BY position",
        (beat_id,),
    ).fetchall()
    probs = [float(v[0]) for v in votes]
    weights = [float(v[1]) for v in votes]
    p = log_odds_average(probs, weights)
    disagreement = weighted_disagreement(probs, weights)
    if row[7] != "log_odds":
        p = float(row[8])  # the booster's or the recalibrated pool's output: logged, not recomputable
    legs = [(v[2], v[3], float(v[1])) for v in votes]
    models = {fingerprint(v[6], v[5]) if v[5] else v[4] for v in votes}  # twins are one model
    return resolve(p, disagreement, len(models), legs, market, params)


def logged_decision(conn: sqlite3.Connection, beat_id: str) -> Recomputed:
    """The decision of ``beat_id`` as it was logged (NULL EV reads back as NaN)."""
    row = conn.execute(
        "SELECT action, probability, confidence, ev_bps, size_fraction, stop_loss, take_profit,"
        " disagreement, hold_reasons FROM decisions WHERE beat_id = ?",
        (beat_id,),
    ).fetchone()
    if row is None:
        raise KeyError(f"no decision logged for beat {beat_id!r}")
    return Recomputed(
        action=Action(row[0]),
        probability=float(row[1]),
        confidence=float(row[2]),
        expected_value_bps=_nan(row[3]),
        size_fraction=float(row[4]),
        stop_loss=None if row[5] is None else float(row[5]),
        take_profit=None if row[6] is None else float(row[6]),
        disagreement=float(row[7]),
        reasons=tuple(HoldReason(r) for r in json.loads(row[8])),
    )
