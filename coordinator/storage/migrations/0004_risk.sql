-- 0004_risk: the risk manager's persisted state (coordinator/risk/state.py).
-- Amounts are TEXT (Decimal, exact); times are INTEGER ms UTC.

-- One row: the halted flag (cleared only by `xylen risk reset`), the UTC day's PnL parts and
-- latched limits (so a restart never lifts a daily loss limit), statistics, breaker counters.
CREATE TABLE risk_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    halted INTEGER NOT NULL DEFAULT 0 CHECK (halted IN (0, 1)),
    halted_reason TEXT NOT NULL DEFAULT '',
    halted_ms INTEGER,
    reset_generation INTEGER NOT NULL DEFAULT 0,
    day INTEGER NOT NULL DEFAULT -1,                 -- UTC day number (ms // 86400000)
    day_start_equity TEXT NOT NULL DEFAULT '0',
    day_start_unrealised TEXT NOT NULL DEFAULT '0',
    day_realised_pnl TEXT NOT NULL DEFAULT '0',
    day_fees TEXT NOT NULL DEFAULT '0',
    daily_limit_hit TEXT NOT NULL DEFAULT '',        -- comma-separated reasons latched today
    equity TEXT NOT NULL DEFAULT '0',
    unrealised_pnl TEXT NOT NULL DEFAULT '0',
    peak_equity TEXT NOT NULL DEFAULT '0',
    drawdown_reference TEXT NOT NULL DEFAULT '0',   -- peak the drawdown breaker measures from
    consecutive_losses INTEGER NOT NULL DEFAULT 0,
    quorum_misses INTEGER NOT NULL DEFAULT 0,
    last_loss_ms INTEGER,
    wins INTEGER NOT NULL DEFAULT 0,
    losses INTEGER NOT NULL DEFAULT 0,
    trades INTEGER NOT NULL DEFAULT 0,
    updated_ms INTEGER NOT NULL DEFAULT 0
);
INSERT INTO risk_state (id) VALUES (1);

-- One row per circuit breaker: level is k (cooldown = base * 2^k on the next trip).
CREATE TABLE risk_breakers (
    kind TEXT PRIMARY KEY,
    level INTEGER NOT NULL CHECK (level >= 0),
    tripped_until_ms INTEGER NOT NULL,
    last_trip_ms INTEGER,
    total_trips INTEGER NOT NULL CHECK (total_trips >= 0)
);

-- Halts, resets (with who), breaker trips, daily limits reached.
CREATE TABLE risk_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL,
    actor TEXT NOT NULL
);
CREATE INDEX risk_events_ts ON risk_events (ts_ms);
