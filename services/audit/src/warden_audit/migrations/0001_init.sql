-- The audit schema. Events are partitioned by ingest day (dropped whole by retention),
-- chained by hash in ingest order (seq), and unique on the event id (event_ids).

-- One row per event id ever stored: a redelivery never makes a duplicate.
CREATE TABLE event_ids (
    id text PRIMARY KEY
);

CREATE TABLE events (
    seq          bigint      NOT NULL,
    ingested_at  timestamptz NOT NULL,
    id           text        NOT NULL,
    type         text        NOT NULL,
    time         timestamptz NOT NULL,
    source       text        NOT NULL,
    actor_kind   text,
    actor_id     text,
    connector    text,
    tool         text,
    profile      text,
    call_id      text,
    user_id      text,
    status       text,
    latency_ms   double precision,
    trace_id     text,
    data         jsonb       NOT NULL,
    prev_hash    bytea       NOT NULL,
    hash         bytea       NOT NULL
) PARTITION BY RANGE (ingested_at);
CREATE INDEX events_seq ON events (seq);
CREATE INDEX events_time ON events (time DESC, id DESC);
CREATE INDEX events_call ON events (call_id) WHERE call_id IS NOT NULL;

-- The end of the chain: the writer holding the advisory lock extends it from here.
CREATE TABLE chain_head (
    one          boolean PRIMARY KEY DEFAULT true CHECK (one),
    seq          bigint      NOT NULL,
    hash         bytea       NOT NULL,
    ingested_at  timestamptz NOT NULL
);
INSERT INTO chain_head (seq, hash, ingested_at) VALUES (0, '\x0000000000000000000000000000000000000000000000000000000000000000', '1970-01-01T00:00:00Z');

-- The last row retention removed: the first remaining row must link to it.
CREATE TABLE chain_anchor (
    one          boolean PRIMARY KEY DEFAULT true CHECK (one),
    seq          bigint      NOT NULL,
    hash         bytea       NOT NULL
);

-- One tool call, assembled from its call.* events.
CREATE TABLE executions (
    call_id      text PRIMARY KEY,
    tool         text,
    connector    text,
    profile      text,
    user_id      text,
    actor_kind   text,
    actor_id     text,
    trace_id     text,
    state        text        NOT NULL,
    state_rank   smallint    NOT NULL,
    status       text,
    started_at   timestamptz NOT NULL,
    requested_at timestamptz,
    decided_at   timestamptz,
    finished_at  timestamptz,
    latency_ms   double precision,
    arguments    jsonb,
    result       jsonb,
    error        jsonb,
    approver     text,
    event_count  integer     NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX executions_started ON executions (started_at DESC, call_id DESC);
CREATE INDEX executions_updated ON executions (updated_at);

-- What could not be parsed or stored: acked, kept (size-capped) for a person to look at.
CREATE TABLE dead_letters (
    id           bigserial PRIMARY KEY,
    subject      text        NOT NULL,
    stream_seq   bigint,
    reason       text        NOT NULL,
    payload      bytea       NOT NULL,
    payload_size integer     NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dead_letters_received ON dead_letters (received_at);
