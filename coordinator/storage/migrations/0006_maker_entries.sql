-- Maker entries (trading.entry limit | maker_preferred): a post-only LIMIT entry waiting for its
-- fill, written in the same step as its PENDING order, before the order is sent.  Times are on the
-- coordinator's injected clock (accelerated or instant in paper runs and tests), which is why they
-- live here and not in orders.created_ms (the order store's wall time): a restarted coordinator
-- enforces the timeout from this row, never from memory.
CREATE TABLE maker_entries (
    client_order_id TEXT PRIMARY KEY REFERENCES orders (client_order_id),
    intent_id TEXT NOT NULL REFERENCES intents (intent_id),
    style TEXT NOT NULL CHECK (style IN ('limit', 'maker_preferred')),
    created_ms INTEGER NOT NULL,  -- clock time the entry was placed
    deadline_ms INTEGER NOT NULL,  -- created_ms + trading.maker_timeout_seconds
    context TEXT NOT NULL,  -- JSON: what re-pricing a taker fallback needs (probability, funding)
    -- pending | filled | partial (timed out part-filled: kept, bracketed) | unfilled (limit: gone)
    -- | fallback (a market entry replaced it) | abandoned (no fill, no fallback)
    status TEXT NOT NULL CHECK (
        status IN ('pending', 'filled', 'partial', 'unfilled', 'fallback', 'abandoned')),
    resolved_ms INTEGER,
    fallback_client_order_id TEXT,  -- the market entry sent instead, if any
    note TEXT NOT NULL DEFAULT ''
);
CREATE INDEX maker_entries_status ON maker_entries (status);
