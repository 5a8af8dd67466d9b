-- Why each subscriber did or did not get a message, and the identities the router has copied.

ALTER TABLE messages ADD COLUMN routing jsonb;  -- [[subscriber, outcome, detail?, copy id?], ...]

-- One row per identity a subscriber has received (subscriptions' identifiers): the copy that
-- took it, and until when a message with the same identity is not copied to it again.
CREATE TABLE identities (
    queue text COLLATE "C" NOT NULL,        -- the subscriber's, <prefix>.accepted.<name>
    identity bytea NOT NULL,                -- SHA-256 of the identifier values
    copy_id text COLLATE "C" NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (queue, identity)
);
CREATE INDEX identities_by_expiry ON identities (expires_at);
