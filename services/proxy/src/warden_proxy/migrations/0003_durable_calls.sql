-- Durable calls (JetStream), one row per (profile, idempotency key). `state` makes a
-- redelivered call safe: received -> started (just before the upstream call) -> done.
-- A redelivery that finds `started` does not call upstream again (outcome unknown).
CREATE TABLE durable_calls (
    call_key    text PRIMARY KEY,
    profile     text NOT NULL,
    tool        text NOT NULL,
    state       text NOT NULL DEFAULT 'received',
    result      jsonb,
    error       jsonb,
    deliveries  integer NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
