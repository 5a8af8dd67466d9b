-- The web console: its administrators and the sessions of whoever logged in.

-- A token is shown once by `integrator admins create NAME` and kept only as its SHA-256.
CREATE TABLE admins (
    name text COLLATE "C" PRIMARY KEY,
    token_sha256 text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- One row per logged-in browser, found by the SHA-256 of its cookie. Exactly one of admin and
-- store_id says who it is; a store sees only its own messages. token_sha256 is the token it
-- logged in with: once that token is replaced or revoked, the session no longer counts.
CREATE TABLE console_sessions (
    id_sha256 text PRIMARY KEY,
    token_sha256 text NOT NULL,
    admin text COLLATE "C" REFERENCES admins (name) ON DELETE CASCADE,
    store_id text COLLATE "C",
    csrf text NOT NULL,
    expires_at timestamptz NOT NULL,
    CHECK ((admin IS NULL) <> (store_id IS NULL))
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);
