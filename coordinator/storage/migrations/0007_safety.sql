-- Safety switches: halt requests (from `xylen risk halt`, the daily loss limit, breaker escalation).
-- A request is written first and executed after: a running coordinator (it holds the home's lock)
-- picks it up within a second; with none running, the CLI takes the lock, claims the request and
-- acts against the venue itself.  A claim is one UPDATE ... WHERE status = 'pending',
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
