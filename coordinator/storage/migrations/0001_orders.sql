-- Orders: intents, orders, every event that touched an order, and fills.
-- Amounts are TEXT (Decimal, exact); times are INTEGER ms UTC.

CREATE TABLE intents (
    intent_id TEXT PRIMARY KEY,
    symbol TEXT NOT NULL,
    side TEXT NOT NULL CHECK (side IN ('BUY', 'SELL')),
    qty TEXT NOT NULL,
    stop_price TEXT,
    take_profit_price TEXT,
    status TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE INDEX intents_status ON intents (status);

CREATE TABLE orders (
    -- ours, written once before the order is sent
    client_order_id TEXT PRIMARY KEY,
    intent_id TEXT NOT NULL REFERENCES intents (intent_id),
    kind TEXT NOT NULL,
    attempt INTEGER NOT NULL CHECK (attempt >= 1),
    symbol TEXT NOT NULL,
    side TEXT NOT NULL CHECK (side IN ('BUY', 'SELL')),
    type TEXT NOT NULL,
    qty TEXT,
    price TEXT,
    trigger_price TEXT,
    reduce_only INTEGER NOT NULL CHECK (reduce_only IN (0, 1)),
    close_position INTEGER NOT NULL CHECK (close_position IN (0, 1)),
    parent_id TEXT REFERENCES orders (client_order_id),
    created_ms INTEGER NOT NULL,
    -- copies of the venue, the result of replaying order_events
    state TEXT NOT NULL,
    exchange_order_id TEXT,
    algo_id TEXT,
    executed_qty TEXT NOT NULL,
    venue_executed_qty TEXT NOT NULL,
    avg_price TEXT,
    not_found_count INTEGER NOT NULL,
    triggered_ms INTEGER,
    updated_ms INTEGER NOT NULL,
    last_seq INTEGER,
    UNIQUE (intent_id, kind, attempt),
    CHECK (qty IS NOT NULL OR close_position = 1)
);
CREATE INDEX orders_state ON orders (state);
CREATE INDEX orders_intent ON orders (intent_id, kind);
CREATE INDEX orders_exchange_id ON orders (symbol, exchange_order_id);
CREATE INDEX orders_algo_id ON orders (symbol, algo_id);
CREATE INDEX orders_parent ON orders (parent_id);

CREATE TABLE order_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    client_order_id TEXT NOT NULL REFERENCES orders (client_order_id),
    event_type TEXT NOT NULL CHECK (event_type IN ('update', 'fill', 'local')),
    kind TEXT,  -- the table kind; NULL when the event was refused before classification
    source TEXT NOT NULL CHECK (source IN ('rest', 'stream', 'local')),
    event TEXT NOT NULL,  -- the frozen event as JSON: what replay re-applies
    raw TEXT,  -- the venue payload as received (JSON), for audit
    state_before TEXT NOT NULL,
    state_after TEXT NOT NULL,
    applied INTEGER NOT NULL CHECK (applied IN (0, 1)),  -- 0: refused (illegal), kept for audit
    duplicate INTEGER NOT NULL CHECK (duplicate IN (0, 1)),
    error TEXT,
    event_ms INTEGER NOT NULL,
    recorded_ms INTEGER NOT NULL
);
CREATE INDEX order_events_order ON order_events (client_order_id, seq);

CREATE TABLE fills (
    symbol TEXT NOT NULL,
    trade_id INTEGER NOT NULL,
    client_order_id TEXT NOT NULL REFERENCES orders (client_order_id),
    exchange_order_id TEXT,
    qty TEXT NOT NULL,
    price TEXT NOT NULL,
    commission TEXT NOT NULL,
    commission_asset TEXT NOT NULL,
    realized_pnl TEXT NOT NULL,
    maker INTEGER NOT NULL CHECK (maker IN (0, 1)),
    time_ms INTEGER NOT NULL,
    source TEXT NOT NULL,
    seq INTEGER NOT NULL REFERENCES order_events (seq),
    PRIMARY KEY (symbol, trade_id)
);
CREATE INDEX fills_order ON fills (client_order_id, seq);
