-- Safety switches: halt requests (from `xylen risk halt`, the daily loss limit, breaker escalation)
-- and the running coordinator's lease.  A request is written first and executed after: the
-- coordinator that holds a fresh lease picks it up within a second; with no fresh lease the CLI
-- claims it and acts against the venue itself.  A claim is one UPDATE ... WHERE status = 'pending',
-- so exactly one process executes a request.  Times are wall-clock ms UTC.
CREATE TABLE halt_requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    requested_ms INTEGER NOT NULL,
    actor TEXT NOT NULL,  -- user@host, or risk-manager for an automatic trigger
    reason TEXT NOT NULL,
    flatten INTEGER NOT NULL CHECK (flatten IN (0, 1)),  -- 1: also close every position at market
    trigger_key TEXT UNIQUE,  -- an automatic trigger fires once per key (daily:DAY, breaker:KIND:MS)
    -- pending | running (claimed) | done | failed (some step failed: see detail; the halt stands)
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'done', 'failed')),
    claimed_by TEXT,
    done_ms INTEGER,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX halt_requests_status ON halt_requests (status);

-- One row: the running coordinator renews it every second; a stale one means none is running.
CREATE TABLE coordinator_lease (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    renewed_ms INTEGER NOT NULL
);
