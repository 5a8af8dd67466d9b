-- A keyed push whose publish went unconfirmed (a 503 after the gateway sent it) may still be in
-- the queue. Its claim is kept, marked, so that a retry with the same key and body takes the
-- same message id: a copy that did get through then has the id the retry's copies have.
ALTER TABLE idempotency_keys ADD COLUMN unconfirmed boolean NOT NULL DEFAULT false;
