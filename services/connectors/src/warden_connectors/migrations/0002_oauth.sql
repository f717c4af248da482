-- OAuth wiring: discovered server picture, client registrations, pending consent flows.

-- the discovered authorization server of an oauth2 connector (RFC 9728 -> RFC 8414/OIDC), no secrets
ALTER TABLE connectors ADD COLUMN oauth_server jsonb;

-- what a token row was issued by, and when (refresh threshold = a share of its lifetime)
ALTER TABLE tokens ADD COLUMN obtained_at timestamptz;
ALTER TABLE tokens ADD COLUMN issuer text;
ALTER TABLE tokens ADD COLUMN client_id text;
ALTER TABLE tokens ADD COLUMN status_reason text;

-- the OAuth client Warden uses per (connector, issuer) when it is not the admin's static one
-- (DCR or CIMD); sealed (it may hold a client secret), AAD = 'connectors/client/<id>/<issuer>'
CREATE TABLE oauth_clients (
    connector_id    uuid NOT NULL REFERENCES connectors(id) ON DELETE CASCADE,
    issuer          text NOT NULL,
    client_id       text NOT NULL,
    auth_method     text NOT NULL,
    source          text NOT NULL,
    sealed          bytea NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (connector_id, issuer)
);

-- consent flows started and not yet finished: one row per state nonce, consumed once
-- (DELETE ... RETURNING) by whichever replica receives the callback
CREATE TABLE oauth_flows (
    nonce           text PRIMARY KEY,
    connector_id    uuid NOT NULL REFERENCES connectors(id) ON DELETE CASCADE,
    user_key        text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL
);
CREATE INDEX oauth_flows_by_connection ON oauth_flows (connector_id, user_key, expires_at);
