CREATE TABLE connectors (
    id              uuid PRIMARY KEY,
    name            text NOT NULL UNIQUE,
    url             text NOT NULL,
    transport       text NOT NULL DEFAULT 'streamable_http',
    description     text NOT NULL DEFAULT '',
    scope           text NOT NULL DEFAULT 'organization',
    auth_type       text NOT NULL,
    -- non-secret auth settings (header names, OAuth overrides, discovered endpoints)
    auth_config     jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- secret auth material (static token, api key, custom header values, client secret),
    -- sealed with envelope encryption; AAD = 'connectors/secret/<id>'
    secret_sealed   bytea,
    secret_expires_at timestamptz,
    status          text NOT NULL,
    status_reason   text,
    config_version  integer NOT NULL DEFAULT 1,
    timeout_s       double precision NOT NULL DEFAULT 60,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    last_used_at    timestamptz
);

-- OAuth tokens, org-wide (user_key = '') or per user; sealed, AAD = 'connectors/token/<id>/<user_key>'
CREATE TABLE tokens (
    connector_id    uuid NOT NULL REFERENCES connectors(id) ON DELETE CASCADE,
    user_key        text NOT NULL DEFAULT '',
    sealed          bytea NOT NULL,
    expires_at      timestamptz,
    scopes          text NOT NULL DEFAULT '',
    version         integer NOT NULL DEFAULT 1,
    status          text NOT NULL DEFAULT 'active',
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (connector_id, user_key)
);
