"""The data logger: one transaction per beat, replay of real ensemble decisions, dashboard queries."""

from __future__ import annotations

import json
import random
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

from coordinator.ensemble import Action, HoldReason, Vote
from coordinator.risk.checks import Reason, Violation
from coordinator.risk.manager import RiskResult
from coordinator.storage.db import init_db
from coordinator.storage.journal import (
    Journal,
    Prediction,
    logged_decision,
    recompute_decision,
)
from coordinator.tests.storage_support import (
    MODELS,
    STEP,
    T0,
    same_float,
    simulated_beat,
    trade,
    trained_ensemble,
)


def count(conn: sqlite3.Connection, table: str) -> int:
    return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


@pytest.fixture()
def conn(tmp_path: Path) -> sqlite3.Connection:
    return init_db(tmp_path / "xylen.db", synchronous="NORMAL")


def test_recompute_matches_real_ensemble_decisions(conn: sqlite3.Connection) -> None:
    ens = trained_ensemble()
    stats = ens.stats()
    assert any(s.calibrated for s in stats.values())  # real calibrators, not the shrink
    weights = ens.weights(list(MODELS))
    assert max(weights.values()) - min(weights.values()) > 0.05  # weights learned, not equal
    journal = Journal(conn, ens.params)
    rng = random.Random(11)
    originals = {}
    for i in range(50):
        ts = T0 + 10_000 * STEP + i * 60_000
        snap, preds, market = simulated_beat(rng, i, ts)
        decision = ens.decide([p.vote for p in preds], market)
        risk = RiskResult(True, Decimal("0.012")) if decision.is_trade else None
        journal.log_beat(snap, preds, decision, risk, f"x-{i}" if decision.is_trade else None)
        originals[snap.beat_id] = decision
    actions = {d.action for d in originals.values()}
    assert Action.HOLD in actions and actions & {Action.LONG, Action.SHORT}
    reasons = {r for d in originals.values() for r in d.reasons}
    assert {HoldReason.NO_BRACKET, HoldReason.NON_POSITIVE_EV} <= reasons
    for beat_id, d in originals.items():
        for got in (recompute_decision(conn, beat_id), logged_decision(conn, beat_id)):
            assert got.action is d.action, beat_id
            assert got.reasons == d.reasons, beat_id
            assert got.probability == d.probability
            assert got.confidence == d.confidence
            assert same_float(got.expected_value_bps, d.expected_value_bps)
            assert got.size_fraction == d.size_fraction
            assert same_float(got.stop_loss, d.stop_loss) and same_float(got.take_profit, d.take_profit)
            assert got.disagreement == d.disagreement
    assert count(conn, "decisions") == 50 and count(conn, "snapshots") == 50
    assert count(conn, "model_predictions") == sum(
        3 + (1 if i % 5 == 2 else 0) for i in range(50)
    )  # every vote, also the timed-out and the duplicate ones
    assert conn.execute("SELECT count(*) FROM model_predictions WHERE status = 'timeout'").fetchone()[0] == 10


def test_a_failure_mid_beat_leaves_nothing(conn: sqlite3.Connection) -> None:
    ens = trained_ensemble(n=60)
    journal = Journal(conn, ens.params)
    rng = random.Random(3)
    snap, preds, market = simulated_beat(rng, 0, T0)
    decision = ens.decide([p.vote for p in preds], market)
    bad = [*preds[:-1], Prediction(preds[-1].vote, status="bogus")]  # type: ignore[arg-type]
    with pytest.raises(sqlite3.IntegrityError):
        journal.log_beat(snap, bad, decision)
    assert (count(conn, "snapshots"), count(conn, "model_predictions"), count(conn, "decisions")) == (0, 0, 0)

    class Exploding:
        @property
        def client_order_id(self) -> str:
            raise RuntimeError("order store down")

    with pytest.raises(RuntimeError):  # fails at the last step, the decision row
        journal.log_beat(snap, preds, decision, None, Exploding())
    assert (count(conn, "snapshots"), count(conn, "model_predictions"), count(conn, "decisions")) == (0, 0, 0)
    assert not conn.in_transaction
    journal.log_beat(snap, preds, decision)  # the same beat, now whole
    assert (count(conn, "snapshots"), count(conn, "model_predictions"), count(conn, "decisions")) == (1, 3, 1)
    with pytest.raises(sqlite3.IntegrityError):  # a beat is logged once
        journal.log_beat(snap, preds, decision)
    assert count(conn, "model_predictions") == 3


def test_savepoint_inside_a_caller_transaction(conn: sqlite3.Connection) -> None:
    ens = trained_ensemble(n=60)
    journal = Journal(conn)
    snap, preds, market = simulated_beat(random.Random(5), 1, T0)
    conn.execute("BEGIN IMMEDIATE")
    journal.log_beat(snap, preds, ens.decide([p.vote for p in preds], market))
    conn.execute("ROLLBACK")
    assert count(conn, "snapshots") == 0
    journal.log_beat(snap, preds, None)  # a beat without decision: snapshot and votes only
    assert (count(conn, "snapshots"), count(conn, "decisions")) == (1, 0)


def test_without_params_a_beat_cannot_be_recomputed(conn: sqlite3.Connection) -> None:
    ens = trained_ensemble(n=60)
    snap, preds, market = simulated_beat(random.Random(5), 1, T0)
    Journal(conn).log_beat(snap, preds, ens.decide([p.vote for p in preds], market))
    with pytest.raises(ValueError, match="DecisionParams"):
        recompute_decision(conn, snap.beat_id)
    with pytest.raises(KeyError):
        recompute_decision(conn, "nope")


def test_decision_of_other_votes_is_refused(conn: sqlite3.Connection) -> None:
    ens = trained_ensemble(n=60)
    snap, preds, market = simulated_beat(random.Random(5), 1, T0)
    decision = ens.decide([p.vote for p in preds], market)
    with pytest.raises(ValueError, match="not the given votes"):
        Journal(conn).log_beat(snap, [Vote("other", 0.6)], decision)
    assert count(conn, "snapshots") == 0


def test_dashboard_queries(conn: sqlite3.Connection) -> None:
    ens = trained_ensemble(n=60)
    journal = Journal(conn, ens.params)
    rng = random.Random(9)
    ids = []
    for i in range(5):
        snap, preds, market = simulated_beat(rng, i, T0 + i * STEP)
        risk = RiskResult(False, Decimal(0), (Violation(Reason.HALTED, "halted by drill"),))
        journal.log_beat(snap, preds, ens.decide([p.vote for p in preds], market), risk)
        ids.append(snap.beat_id)
    journal.log_outcome(ids[0], T0 + 3_600_000, 1, 101.0, 100.0)
    recent = journal.recent_decisions(3)
    assert [r["beat_id"] for r in recent] == ids[::-1][:3]
    assert recent[0]["risk_approved"] is False
    assert recent[0]["risk_reasons"] == [{"reason": "halted", "detail": "halted by drill"}]
    assert len(recent[0]["votes"]) == 3 and recent[0]["votes"][0]["model_id"] == MODELS[0]
    json.dumps(recent)  # JSON-ready
    oldest = journal.recent_decisions(10)[-1]
    assert (oldest["outcome_label"], oldest["outcome_return_bps"]) == (1, 100.0)

    assert journal.log_trade(trade("i-1", T0 + 1000))
    assert not journal.log_trade(trade("i-1", T0 + 1000))  # once per intent
    assert journal.log_trade(trade("i-2", T0 + 5000, "-3.25"))
    got = journal.trades(T0 + 2000)
    assert [t.intent_id for t in got] == ["i-2"] and got[0].realised_pnl == Decimal("-3.25")
    assert journal.trades() == [trade("i-1", T0 + 1000), trade("i-2", T0 + 5000, "-3.25")]

    for k in range(4):
        journal.log_equity(T0 + k * STEP, Decimal("10000") + k, Decimal(k))
    assert journal.equity_curve(T0 + 2 * STEP) == [
        (T0 + 2 * STEP, Decimal("10002"), Decimal(2)),
        (T0 + 3 * STEP, Decimal("10003"), Decimal(3)),
    ]


def test_twins_apart_in_the_vote_list_are_logged_with_their_own_rows(conn: sqlite3.Connection) -> None:
    """Twins (one fingerprint) are grouped by the ensemble, so its weighted votes are not in the votes'
    order when another server's vote sits between them; each vote still finds its own row."""
    ens = trained_ensemble(n=60)
    snap, _preds, market = simulated_beat(random.Random(7), 1, T0)
    a, b, c = MODELS[:3]
    votes = [
        Vote(a, 0.58, stop_loss=market.price * 0.99, take_profit=market.price * 1.02, fingerprint="gbdt:v1"),
        Vote(b, 0.52, stop_loss=market.price * 0.99, take_profit=market.price * 1.02, fingerprint="river:v9"),
        Vote(c, 0.58, stop_loss=market.price * 0.99, take_profit=market.price * 1.02, fingerprint="gbdt:v1"),
    ]
    decision = ens.decide(votes, market)
    assert [v.model_id for v in decision.votes] == [a, c, b]  # grouped: the twins first
    Journal(conn, ens.params).log_beat(snap, votes, decision)
    rows = conn.execute(
        "SELECT model_id, weight FROM model_predictions WHERE beat_id = ? ORDER BY position", (snap.beat_id,)
    ).fetchall()
    by_id = {v.model_id: v.weight for v in decision.votes}
    assert [r[0] for r in rows] == [a, b, c]
    assert [r[1] for r in rows] == [by_id[a], by_id[b], by_id[c]]
