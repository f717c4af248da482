-- One row per event id: a redelivery never makes a duplicate.
CREATE TABLE events (
    seq         bigserial,
    id          text PRIMARY KEY,
    type        text NOT NULL,
    time        timestamptz NOT NULL,
    source      text NOT NULL,
    actor_kind  text,
    actor_id    text,
    connector   text,
    tool        text,
    profile     text,
    call_id     text,
    user_id     text,
    status      text,
    latency_ms  double precision,
    trace_id    text,
    data        jsonb NOT NULL DEFAULT '{}'::jsonb,
    ingested_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_time ON events (time DESC, id DESC);
CREATE INDEX events_call ON events (call_id) WHERE call_id IS NOT NULL;
CREATE INDEX events_type ON events (type, time DESC);

-- What could not be parsed or stored: acked, kept for a person to look at.
CREATE TABLE dead_letters (
    id          bigserial PRIMARY KEY,
    subject     text NOT NULL,
    reason      text NOT NULL,
    payload     bytea NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
