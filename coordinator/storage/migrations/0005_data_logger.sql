-- 0005_data_logger: the data logger (coordinator/storage/journal.py), "schema v2" on top of the order
-- tables.  One heartbeat ("beat") writes a snapshot, one prediction row per vote and a decision, in
-- one transaction.  Times are INTEGER ms UTC; probabilities, prices of the market snapshot and bps
-- are REAL (binary64, read back bit for bit); money and quantities are TEXT (Decimal, exact); JSON
-- in TEXT columns.  A NaN written to a REAL column reads back as NULL (SQLite has no NaN).

-- The market inputs of one beat: what the ensemble saw.
CREATE TABLE snapshots (
    beat_id TEXT PRIMARY KEY,
    ts_ms INTEGER NOT NULL,
    symbol TEXT NOT NULL,
    price REAL NOT NULL,  -- the price the ensemble priced the bracket at (Market.price)
    mark_price REAL,
    atr REAL,  -- price units; NULL when unknown
    funding_rate REAL NOT NULL,
    next_funding_ms INTEGER,
    funding_interval_hours REAL NOT NULL,
    features TEXT NOT NULL,  -- JSON {name: value}
    feature_version TEXT NOT NULL
);
CREATE INDEX snapshots_ts ON snapshots (ts_ms);
CREATE INDEX snapshots_symbol_ts ON snapshots (symbol, ts_ms);

-- One row per vote of a beat, in the order the votes were given to the ensemble.
CREATE TABLE model_predictions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    beat_id TEXT NOT NULL REFERENCES snapshots (beat_id),
    position INTEGER NOT NULL,  -- index of the vote in the beat
    model_id TEXT NOT NULL,
    model_version TEXT NOT NULL,
    backend TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'timeout', 'error')),
    error TEXT,
    prob_up REAL,  -- raw; NULL for a missing or non-finite probability
    prob_calibrated REAL,  -- NULL unless the ensemble used the vote
    weight REAL,  -- normalised over the votes used; NULL unless used
    used INTEGER NOT NULL CHECK (used IN (0, 1)),
    action TEXT NOT NULL,
    stop_loss REAL,
    take_profit REAL,
    latency_ms REAL NOT NULL,
    UNIQUE (beat_id, position)
);
CREATE INDEX model_predictions_model ON model_predictions (model_id, beat_id);
CREATE INDEX model_predictions_status ON model_predictions (status);

-- The ensemble's decision of a beat, the risk manager's answer and the order it led to, if any.
CREATE TABLE decisions (
    beat_id TEXT PRIMARY KEY REFERENCES snapshots (beat_id),
    ts_ms INTEGER NOT NULL,
    symbol TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('LONG', 'SHORT', 'HOLD')),
    probability REAL NOT NULL,
    confidence REAL NOT NULL,
    ev_bps REAL,  -- NULL when not computable (no bracket)
    size_fraction REAL NOT NULL,
    stop_loss REAL,
    take_profit REAL,
    disagreement REAL NOT NULL,
    source TEXT NOT NULL,  -- log_odds | meta
    hold_reasons TEXT NOT NULL,  -- JSON list of HoldReason values
    params TEXT,  -- JSON DecisionParams: the config values the decision was made with
    risk_approved INTEGER CHECK (risk_approved IN (0, 1)),  -- NULL: not sent to the risk manager
    risk_quantity TEXT,
    risk_reasons TEXT,  -- JSON list of {reason, detail}
    client_order_id TEXT  -- the entry order placed for this decision, if any
);
CREATE INDEX decisions_ts ON decisions (ts_ms);
CREATE INDEX decisions_symbol_ts ON decisions (symbol, ts_ms);
CREATE INDEX decisions_action ON decisions (action, ts_ms);

-- A decision's realised outcome once its horizon passed.
CREATE TABLE outcomes (
    beat_id TEXT PRIMARY KEY REFERENCES decisions (beat_id),
    outcome_ms INTEGER NOT NULL,
    label INTEGER NOT NULL CHECK (label IN (0, 1)),  -- 1: the price rose over the horizon
    exit_price REAL NOT NULL,  -- price at the end of the horizon
    return_bps REAL NOT NULL,  -- price change over the horizon in bps
    realised_pnl TEXT  -- of the trade the decision opened, when it traded and closed
);
CREATE INDEX outcomes_ts ON outcomes (outcome_ms);

-- Closed round trips.
CREATE TABLE trades (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    intent_id TEXT NOT NULL UNIQUE,
    symbol TEXT NOT NULL,
    side TEXT NOT NULL CHECK (side IN ('LONG', 'SHORT')),
    entry_ms INTEGER NOT NULL,
    exit_ms INTEGER NOT NULL,
    entry_price TEXT NOT NULL,
    exit_price TEXT NOT NULL,
    qty TEXT NOT NULL,
    realised_pnl TEXT NOT NULL,  -- before fees and funding
    fees TEXT NOT NULL,
    funding TEXT NOT NULL,  -- paid (negative: received)
    exit_reason TEXT NOT NULL  -- stop_loss | take_profit | close | ...
);
CREATE INDEX trades_exit ON trades (exit_ms);
CREATE INDEX trades_symbol_exit ON trades (symbol, exit_ms);

-- Account equity over time.
CREATE TABLE equity (
    ts_ms INTEGER PRIMARY KEY,
    equity TEXT NOT NULL,
    daily_pnl TEXT NOT NULL,
    unrealised_pnl TEXT NOT NULL DEFAULT '0'
);
