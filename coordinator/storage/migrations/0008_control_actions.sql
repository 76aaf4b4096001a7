-- Admin actions taken from the dashboard's control API (pause / resume entries, halt, halt and
-- flatten, reset a breaker): who, what, when and how it ended.  The newest pause or resume row is
-- whether entries are paused, so a pause outlives a restart.  Times are wall-clock ms UTC.
CREATE TABLE control_actions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ms INTEGER NOT NULL,
    actor TEXT NOT NULL,  -- "dashboard" for the control API
    action TEXT NOT NULL,  -- pause | resume | halt | halt+flatten | reset-breaker
    detail TEXT NOT NULL DEFAULT '',
    ok INTEGER NOT NULL DEFAULT 1 CHECK (ok IN (0, 1))
);
CREATE INDEX control_actions_action ON control_actions (action, id);
