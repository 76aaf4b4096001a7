"""``EnsembleStore``: the ensemble's state in SQLite (tables of migration ``0003_ensemble``).

What is stored, so that a restart resumes with the same weights, calibrators and meta-learner:

* ``ensemble_models``: per model the prior, the decayed relative log-loss, the running performance
  sums and the isotonic calibrator as JSON thresholds (``X_thresholds_``/``y_thresholds_``);
* ``ensemble_state``: the decay clock, the base-rate counts, the meta-learner (LightGBM model text,
  feature layout, active flag, last evaluation);
* ``ensemble_outcomes`` and ``ensemble_meta_rows``: the logged outcomes the calibrators and the
  meta-learner are refitted on (the most recent windows are read back on load); the pool's own
  record is kept there too, as two rows per outcome under the reserved ids :data:`POOL_ROW`
  (``prob_raw`` holds the pooled log-odds ``z`` itself, ``prob_calibrated`` the probability answered) and
  :data:`BASE_ROW` (the base rate), from which the pool's recalibration is refitted on load (on the
  window as it was at the last scheduled refit: their count says where the schedule stands);
* ``ensemble_weight_history`` and ``ensemble_refits``: the record of weights over time and of
  every refit decision.

Each :meth:`EnsembleStore.save` is one transaction.  Single writer per file; not thread-safe.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from coordinator.ensemble.calibration import Calibrator
from coordinator.ensemble.meta import MetaEvaluation, MetaLearner, MetaRow
from coordinator.ensemble.pool import PoolRecord
from coordinator.ensemble.tracking import ModelTracker
from coordinator.storage.db import Synchronous, init_db

POOL_ROW = "_pool"
BASE_ROW = "_base"


@dataclass(frozen=True, slots=True)
class OutcomeRow:
    """One (outcome, model) pair."""

    model_id: str
    outcome_ms: int
    decision_ms: int
    prob_raw: float
    prob_calibrated: float
    label: int


@dataclass(frozen=True, slots=True)
class RefitRow:
    """One refit decision (``target`` is a model id or ``"_meta"``)."""

    ts_ms: int
    target: str
    accepted: bool
    candidate_logloss: float
    baseline_logloss: float
    n_fit: int
    n_holdout: int


@dataclass(slots=True)
class ModelRecord:
    """The persisted state of one model."""

    model_id: str
    prior: float
    loss: float
    tracker: ModelTracker
    calibrator: Calibrator | None
    last_refit_ms: int | None


@dataclass(slots=True)
class GlobalRecord:
    """The persisted global state."""

    last_outcome_ms: int | None
    base_up: float
    base_n: float
    last_history_ms: int | None
    meta: MetaLearner


@dataclass(slots=True)
class Loaded:
    """Everything :meth:`EnsembleStore.load` reads back."""

    models: dict[str, ModelRecord] = field(default_factory=dict)
    state: GlobalRecord | None = None
    windows: dict[str, list[tuple[float, float, int]]] = field(default_factory=dict)
    meta_rows: list[MetaRow] = field(default_factory=list)
    pool: list[PoolRecord] = field(default_factory=list)
    """The pool's most recent outcomes, oldest first: the window and the ones since the last refit."""
    pool_count: int = 0
    """How many outcomes the pool has ever recorded."""


def _nullable(value: float) -> float | None:
    return None if math.isnan(value) else value


class EnsembleStore:
    """Persistence of the ensemble over one SQLite connection from :func:`init_db`."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    @classmethod
    def open(cls, path: str | Path, *, synchronous: Synchronous = "FULL") -> EnsembleStore:
        """Open (and migrate) the database at ``path``."""
        return cls(init_db(path, synchronous=synchronous))

    @property
    def connection(self) -> sqlite3.Connection:
        return self._conn

    def close(self) -> None:
        self._conn.close()

    def load(self, window: int, meta_window: int, pool_refit_every: int = 1) -> Loaded:
        """The stored state, with the last ``window`` outcomes per model and ``meta_window`` meta rows.

        The pool's record is read ``window`` outcomes back from its last scheduled refit (every
        ``pool_refit_every`` outcomes of its whole count), so that refit can be repeated exactly.
        """
        out = Loaded()
        for row in self._conn.execute(
            "SELECT model_id, prior, loss, n, hits, sum_log_loss, sum_brier, last_outcome_ms, calibrator,"
            " last_refit_ms FROM ensemble_models ORDER BY model_id"
        ):
            model_id = str(row[0])
            tracker = ModelTracker(int(row[3]), int(row[4]), float(row[5]), float(row[6]), row[7])
            calibrator = Calibrator.from_json(json.loads(row[8])) if row[8] is not None else None
            out.models[model_id] = ModelRecord(
                model_id, float(row[1]), float(row[2]), tracker, calibrator, row[9]
            )
            recent = self._conn.execute(
                "SELECT prob_raw, prob_calibrated, label FROM ensemble_outcomes WHERE model_id = ?"
                " ORDER BY seq DESC LIMIT ?",
                (model_id, window),
            ).fetchall()
            out.windows[model_id] = [(float(r[0]), float(r[1]), int(r[2])) for r in reversed(recent)]
        state = self._conn.execute(
            "SELECT last_outcome_ms, base_up, base_n, last_history_ms, meta_model_ids, meta_model_text,"
            " meta_active, meta_last_refit_ms, meta_evaluation FROM ensemble_state WHERE id = 1"
        ).fetchone()
        if state is not None:
            evaluation = MetaEvaluation(**json.loads(state[8])) if state[8] is not None else None
            meta = MetaLearner(
                model_ids=tuple(json.loads(state[4])) if state[4] is not None else (),
                model_text=state[5],
                active=bool(state[6]),
                last_refit_ms=state[7],
                evaluation=evaluation,
            )
            out.state = GlobalRecord(state[0], float(state[1]), float(state[2]), state[3], meta)
        rows = self._conn.execute(
            "SELECT outcome_ms, calibrated, log_odds_prob, disagreement, atr_bps, funding_rate, label"
            " FROM ensemble_meta_rows ORDER BY seq DESC LIMIT ?",
            (meta_window,),
        ).fetchall()
        out.meta_rows = [
            MetaRow(
                int(r[0]),
                {str(k): float(v) for k, v in json.loads(r[1]).items()},
                float(r[2]),
                float(r[3]),
                math.nan if r[4] is None else float(r[4]),
                float(r[5]),
                int(r[6]),
            )
            for r in reversed(rows)
        ]
        count = self._conn.execute(
            "SELECT COUNT(*) FROM ensemble_outcomes WHERE model_id = ?", (POOL_ROW,)
        ).fetchone()
        out.pool_count = int(count[0])
        pool_window = window + out.pool_count % pool_refit_every
        pool_rows = self._conn.execute(
            "SELECT prob_raw, prob_calibrated, label FROM ensemble_outcomes WHERE model_id = ?"
            " ORDER BY seq DESC LIMIT ?",
            (POOL_ROW, pool_window),
        ).fetchall()
        base_rows = self._conn.execute(
            "SELECT prob_raw FROM ensemble_outcomes WHERE model_id = ? ORDER BY seq DESC LIMIT ?",
            (BASE_ROW, pool_window),
        ).fetchall()
        out.pool = [
            PoolRecord(float(p[0]), float(p[1]), float(b[0]), int(p[2]))
            for p, b in zip(reversed(pool_rows), reversed(base_rows), strict=False)
        ]
        return out

    def save(
        self,
        *,
        now_ms: int,
        models: Sequence[ModelRecord],
        state: GlobalRecord,
        outcomes: Sequence[OutcomeRow] = (),
        meta_row: MetaRow | None = None,
        history: Sequence[tuple[int, str, float, float]] = (),
        refits: Sequence[RefitRow] = (),
    ) -> None:
        """Write one observation's consequences in one transaction."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                "INSERT INTO ensemble_outcomes (model_id, outcome_ms, decision_ms, prob_raw, prob_calibrated,"
                " label) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (o.model_id, o.outcome_ms, o.decision_ms, o.prob_raw, o.prob_calibrated, o.label)
                    for o in outcomes
                ],
            )
            conn.executemany(
                "INSERT INTO ensemble_models (model_id, prior, loss, n, hits, sum_log_loss, sum_brier,"
                " last_outcome_ms, calibrator, last_refit_ms, updated_ms) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT (model_id) DO UPDATE SET prior = excluded.prior, loss = excluded.loss,"
                " n = excluded.n, hits = excluded.hits, sum_log_loss = excluded.sum_log_loss,"
                " sum_brier = excluded.sum_brier, last_outcome_ms = excluded.last_outcome_ms,"
                " calibrator = excluded.calibrator, last_refit_ms = excluded.last_refit_ms,"
                " updated_ms = excluded.updated_ms",
                [
                    (
                        m.model_id,
                        m.prior,
                        m.loss,
                        m.tracker.n,
                        m.tracker.hits,
                        m.tracker.sum_log_loss,
                        m.tracker.sum_brier,
                        m.tracker.last_ms,
                        json.dumps(m.calibrator.to_json()) if m.calibrator is not None else None,
                        m.last_refit_ms,
                        now_ms,
                    )
                    for m in models
                ],
            )
            meta = state.meta
            evaluation = meta.evaluation
            conn.execute(
                "INSERT INTO ensemble_state (id, last_outcome_ms, base_up, base_n, last_history_ms,"
                " meta_model_ids, meta_model_text, meta_active, meta_last_refit_ms, meta_evaluation,"
                " updated_ms) VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET last_outcome_ms = excluded.last_outcome_ms,"
                " base_up = excluded.base_up, base_n = excluded.base_n,"
                " last_history_ms = excluded.last_history_ms, meta_model_ids = excluded.meta_model_ids,"
                " meta_model_text = excluded.meta_model_text, meta_active = excluded.meta_active,"
                " meta_last_refit_ms = excluded.meta_last_refit_ms,"
                " meta_evaluation = excluded.meta_evaluation, updated_ms = excluded.updated_ms",
                (
                    state.last_outcome_ms,
                    state.base_up,
                    state.base_n,
                    state.last_history_ms,
                    json.dumps(list(meta.model_ids)),
                    meta.model_text,
                    int(meta.active),
                    meta.last_refit_ms,
                    json.dumps(
                        {
                            "active": evaluation.active,
                            "meta_logloss": evaluation.meta_logloss,
                            "baseline_logloss": evaluation.baseline_logloss,
                            "n_train": evaluation.n_train,
                            "n_holdout": evaluation.n_holdout,
                        }
                    )
                    if evaluation is not None
                    else None,
                    now_ms,
                ),
            )
            if meta_row is not None:
                conn.execute(
                    "INSERT INTO ensemble_meta_rows (outcome_ms, calibrated, log_odds_prob, disagreement,"
                    " atr_bps, funding_rate, label) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        meta_row.outcome_ms,
                        json.dumps(dict(meta_row.calibrated)),
                        meta_row.log_odds_prob,
                        meta_row.disagreement,
                        _nullable(meta_row.atr_bps),
                        meta_row.funding_rate,
                        meta_row.label,
                    ),
                )
            conn.executemany(
                "INSERT OR REPLACE INTO ensemble_weight_history (ts_ms, model_id, weight, loss)"
                " VALUES (?, ?, ?, ?)",
                list(history),
            )
            conn.executemany(
                "INSERT INTO ensemble_refits (ts_ms, target, accepted, candidate_logloss, baseline_logloss,"
                " n_fit, n_holdout) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        r.ts_ms,
                        r.target,
                        int(r.accepted),
                        r.candidate_logloss,
                        r.baseline_logloss,
                        r.n_fit,
                        r.n_holdout,
                    )
                    for r in refits
                ],
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def weight_history(self, model_id: str | None = None) -> list[tuple[int, str, float, float]]:
        """Rows ``(ts_ms, model_id, weight, loss)`` in time order."""
        if model_id is None:
            rows = self._conn.execute(
                "SELECT ts_ms, model_id, weight, loss FROM ensemble_weight_history ORDER BY ts_ms, model_id"
            ).fetchall()
        else:
            rows = self._conn.execute(
                "SELECT ts_ms, model_id, weight, loss FROM ensemble_weight_history WHERE model_id = ?"
                " ORDER BY ts_ms",
                (model_id,),
            ).fetchall()
        return [(int(r[0]), str(r[1]), float(r[2]), float(r[3])) for r in rows]

    def refits(self, target: str | None = None) -> list[RefitRow]:
        """The logged refit decisions in time order."""
        query = (
            "SELECT ts_ms, target, accepted, candidate_logloss, baseline_logloss, n_fit, n_holdout"
            " FROM ensemble_refits"
        )
        args: tuple[str, ...] = ()
        if target is not None:
            query += " WHERE target = ?"
            args = (target,)
        rows = self._conn.execute(query + " ORDER BY seq", args).fetchall()
        return [
            RefitRow(int(r[0]), str(r[1]), bool(r[2]), float(r[3]), float(r[4]), int(r[5]), int(r[6]))
            for r in rows
        ]
