-- Calls held for a human decision. Stored so a proxy restart loses no pending approval;
-- call_key is the caller's idempotency key when given (a redelivered durable call finds
-- its earlier decision), else the call id.
CREATE TABLE approvals (
    id          uuid PRIMARY KEY,
    call_key    text NOT NULL UNIQUE,
    call_id     text NOT NULL,
    tool        text NOT NULL,
    profile     text NOT NULL,
    actor       text NOT NULL,
    arguments   jsonb NOT NULL DEFAULT '{}'::jsonb,
    status      text NOT NULL DEFAULT 'pending',  -- pending | approved | rejected | expired
    reason      text,
    decided_by  text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    decided_at  timestamptz
);
CREATE INDEX approvals_pending ON approvals (created_at) WHERE status = 'pending';
