-- Agent API keys: shown once, stored hashed (SHA-256 of a 256-bit random secret),
-- identified by a public prefix, bound to one behavior profile, revocable.
CREATE TABLE agent_keys (
    id           uuid PRIMARY KEY,
    prefix       text NOT NULL UNIQUE,
    key_hash     text NOT NULL,
    name         text NOT NULL,
    profile      text NOT NULL,
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    last_used_at timestamptz
);
