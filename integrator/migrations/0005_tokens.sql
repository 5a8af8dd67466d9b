-- Store access tokens, shared by every gateway replica (they were in the stores file before).

-- A token is shown once by `integrator tokens create STORE` and kept only as its SHA-256.
-- Revoking keeps the row, so that importing an old stores file cannot bring the token back.
CREATE TABLE store_tokens (
    id text COLLATE "C" PRIMARY KEY,
    store_id text COLLATE "C" NOT NULL,
    sha256 text COLLATE "C" NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
CREATE INDEX store_tokens_store ON store_tokens (store_id);

-- Bumped in the same transaction as every change to store_tokens: a gateway looks at this one
-- row each second and reads the tokens again only when it has moved.
CREATE TABLE store_tokens_version (version bigint NOT NULL);
INSERT INTO store_tokens_version VALUES (0);
CREATE FUNCTION store_tokens_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE store_tokens_version SET version = version + 1;
    RETURN NULL;
END $$;
CREATE TRIGGER store_tokens_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON store_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION store_tokens_changed();

-- Each store's rate-limit bucket, shared by the gateways of one hub (its prefix). Gateways take
-- tokens from it a lease at a time (take_tokens), so a push rarely waits on PostgreSQL. Unlogged:
-- after a crash the buckets start full, which is what an idle store's would be anyway.
CREATE UNLOGGED TABLE rate_buckets (
    prefix text COLLATE "C" NOT NULL,
    store_id text COLLATE "C" NOT NULL,
    tokens double precision NOT NULL,
    refilled_at timestamptz NOT NULL,
    PRIMARY KEY (prefix, store_id)
);

-- Up to `want` tokens from a store's bucket, refilled at `rate` a second up to `burst`; with none
-- granted, `wait_seconds` says when the next one will be there. The clock is PostgreSQL's, read
-- once the row is locked, so gateways whose clocks differ still share one bucket.
CREATE FUNCTION take_tokens(
    p_prefix text, p_store text, want integer, rate double precision, burst double precision,
    OUT granted integer, OUT wait_seconds double precision
) LANGUAGE plpgsql AS $$
DECLARE
    moment timestamptz;
    have double precision;
BEGIN
    INSERT INTO rate_buckets VALUES (p_prefix, p_store, burst, clock_timestamp()) ON CONFLICT DO NOTHING;
    PERFORM 1 FROM rate_buckets WHERE prefix = p_prefix AND store_id = p_store FOR UPDATE;
    moment := clock_timestamp();
    SELECT least(burst, tokens + greatest(0, extract(epoch FROM moment - refilled_at)) * rate) INTO have
        FROM rate_buckets WHERE prefix = p_prefix AND store_id = p_store;
    granted := least(want, floor(have))::integer;
    UPDATE rate_buckets SET tokens = have - granted, refilled_at = moment
        WHERE prefix = p_prefix AND store_id = p_store;
    wait_seconds := CASE WHEN granted > 0 THEN 0 ELSE (1 - have) / rate END;
END $$;
