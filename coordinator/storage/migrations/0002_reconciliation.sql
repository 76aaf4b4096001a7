-- Reconciliation at start: one run row per reconciliation, one report row per difference found
-- between SQLite and the exchange, with how it was resolved.  Times are INTEGER ms UTC.

CREATE TABLE reconciliation_runs (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT,
    started_ms INTEGER NOT NULL,
    finished_ms INTEGER,
    differences INTEGER NOT NULL DEFAULT 0,
    summary TEXT
);

CREATE TABLE reconciliation_report (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id INTEGER NOT NULL REFERENCES reconciliation_runs (run_id),
    kind TEXT NOT NULL,  -- what differed, e.g. pending_never_sent, unknown_ours, unprotected_position
    symbol TEXT,
    client_order_id TEXT,
    exchange_id TEXT,
    detail TEXT NOT NULL,
    resolution TEXT NOT NULL,  -- what was done about it ("reported" when it was left alone)
    recorded_ms INTEGER NOT NULL
);
CREATE INDEX reconciliation_report_run ON reconciliation_report (run_id);
