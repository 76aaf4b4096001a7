-- 0003_ensemble: the ensemble's persisted state (owner: coordinator/ensemble/store.py).
-- Times are INTEGER ms UTC; probabilities REAL; JSON in TEXT columns (never pickles).

-- Every (outcome, model) pair observed: the calibration window and the ECE window are read back from here.
CREATE TABLE ensemble_outcomes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    model_id TEXT NOT NULL,
    outcome_ms INTEGER NOT NULL,
    decision_ms INTEGER NOT NULL,
    prob_raw REAL NOT NULL,
    prob_calibrated REAL NOT NULL,  -- with the calibration in use when the outcome arrived
    label INTEGER NOT NULL CHECK (label IN (0, 1))
);
CREATE INDEX ensemble_outcomes_model ON ensemble_outcomes (model_id, seq);

-- One row per known model: weight state, running performance sums, calibrator.
CREATE TABLE ensemble_models (
    model_id TEXT PRIMARY KEY,
    prior REAL NOT NULL,
    loss REAL NOT NULL,  -- decayed cumulative log-loss relative to the base rate
    n INTEGER NOT NULL,
    hits INTEGER NOT NULL,
    sum_log_loss REAL NOT NULL,
    sum_brier REAL NOT NULL,
    last_outcome_ms INTEGER,
    calibrator TEXT,  -- JSON {x, y, fitted_ms, n_samples, holdout_logloss}: isotonic thresholds; NULL = shrink
    last_refit_ms INTEGER,
    updated_ms INTEGER NOT NULL
);

-- The single row of global state: decay clock, base-rate counts, meta-learner.
CREATE TABLE ensemble_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last_outcome_ms INTEGER,
    base_up REAL NOT NULL,
    base_n REAL NOT NULL,
    last_history_ms INTEGER,
    meta_model_ids TEXT,  -- JSON list: the feature layout of the booster
    meta_model_text TEXT,  -- LightGBM model text
    meta_active INTEGER NOT NULL CHECK (meta_active IN (0, 1)),
    meta_last_refit_ms INTEGER,
    meta_evaluation TEXT,  -- JSON of the last walk-forward evaluation
    updated_ms INTEGER NOT NULL
);

-- Training rows of the meta-learner, one per outcome, features as of that outcome (out of time).
CREATE TABLE ensemble_meta_rows (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    outcome_ms INTEGER NOT NULL,
    calibrated TEXT NOT NULL,  -- JSON {model_id: calibrated prob} of the usable votes
    log_odds_prob REAL NOT NULL,
    disagreement REAL NOT NULL,
    atr_bps REAL,  -- NULL when unknown
    funding_rate REAL NOT NULL,
    label INTEGER NOT NULL CHECK (label IN (0, 1))
);

-- Weights over time (at most one snapshot per history interval).
CREATE TABLE ensemble_weight_history (
    ts_ms INTEGER NOT NULL,
    model_id TEXT NOT NULL,
    weight REAL NOT NULL,
    loss REAL NOT NULL,
    PRIMARY KEY (ts_ms, model_id)
);

-- Every scheduled refit of a calibrator (target = model id) or of the meta-learner (target = '_meta').
CREATE TABLE ensemble_refits (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ms INTEGER NOT NULL,
    target TEXT NOT NULL,
    accepted INTEGER NOT NULL CHECK (accepted IN (0, 1)),
    candidate_logloss REAL NOT NULL,
    baseline_logloss REAL NOT NULL,
    n_fit INTEGER NOT NULL,
    n_holdout INTEGER NOT NULL
);
CREATE INDEX ensemble_refits_target ON ensemble_refits (target, ts_ms);
