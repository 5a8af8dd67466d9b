-- Delivery to web endpoints: every attempt on a copy, and the endpoints a 410 disabled.

-- [{"at": unix ms, "duration_ms", "status", "error", "response": first KB}, ...] in time order
ALTER TABLE copies ADD COLUMN attempts jsonb;

-- One row per endpoint subscriber that answered 410 Gone, under the hub's prefix, until
-- `integrator endpoints enable` removes it.
CREATE TABLE disabled_endpoints (
    prefix text COLLATE "C" NOT NULL,
    subscriber text COLLATE "C" NOT NULL,
    reason text NOT NULL,
    disabled_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (prefix, subscriber)
);
