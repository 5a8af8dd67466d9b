-- The ledger: what became of every message, partitioned by the day in its id, so that
-- retention drops whole partitions and a lookup by id reads one.

CREATE TABLE messages (
    day date NOT NULL,                      -- UTC day of the ObjectId's timestamp
    message_id text COLLATE "C" NOT NULL,
    message text COLLATE "C",               -- null only until the incoming copy is written
    store_id text COLLATE "C",
    received_at timestamptz,
    state text NOT NULL,                    -- accepted, validated, routed, unrouted, rejected, dead
    updated_at timestamptz NOT NULL,
    errors jsonb,
    warnings jsonb,
    children jsonb,                         -- [[copy id, subscriber], ...] once routed
    timeline jsonb NOT NULL,                -- [[unix ms, state, detail?], ...] in time order
    envelope text,                          -- the message as it came in, payload included
    PRIMARY KEY (day, message_id)
) PARTITION BY RANGE (day);

-- a store's messages newest first: the search and its keyset cursor
CREATE INDEX messages_by_store ON messages (store_id, received_at DESC, message_id DESC);
CREATE INDEX messages_by_time ON messages (received_at DESC, message_id DESC);

CREATE TABLE copies (
    day date NOT NULL,                      -- the parent's day: a copy's id keeps its timestamp
    message_id text COLLATE "C" NOT NULL,
    parent_id text COLLATE "C" NOT NULL,
    subscriber text NOT NULL,
    state text NOT NULL,                    -- pending (on its subscriber's queue), dead
    updated_at timestamptz NOT NULL,
    reason text,
    PRIMARY KEY (day, message_id)
) PARTITION BY RANGE (day);

-- One row per Idempotency-Key a store has used; `answer` is null while its push is in flight.
CREATE TABLE idempotency_keys (
    store_id text COLLATE "C" NOT NULL,
    key text COLLATE "C" NOT NULL,
    body_hash bytea NOT NULL,
    message_id text NOT NULL,
    answer bytea,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, key)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
