CREATE TABLE tools (
    name          text PRIMARY KEY,              -- <alias>__<upstream name>
    connector     text NOT NULL,
    alias         text NOT NULL,
    upstream_name text NOT NULL,
    description   text NOT NULL DEFAULT '',
    input_schema  jsonb NOT NULL,
    annotations   jsonb,
    operation     text NOT NULL CHECK (operation IN ('read', 'write')),
    auto_approve  boolean NOT NULL DEFAULT true,
    deferred      boolean NOT NULL DEFAULT false,
    favorite      boolean NOT NULL DEFAULT false,
    enabled       boolean NOT NULL DEFAULT true,
    schema_valid  boolean NOT NULL DEFAULT true,
    -- drift: name, description and schema pinned by hash; a changed listing is kept aside
    pin_hash      text NOT NULL,
    held          boolean NOT NULL DEFAULT false,
    drift         jsonb,
    embedding     bytea,
    registered_by text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (connector, upstream_name)
);
CREATE INDEX tools_connector ON tools (connector);

CREATE TABLE connector_settings (
    connector            text PRIMARY KEY,
    auto_approve_default boolean NOT NULL DEFAULT true,
    cache_enabled        boolean NOT NULL DEFAULT true,
    refreshed_at         timestamptz
);

CREATE TABLE profiles (
    name        text PRIMARY KEY,
    description text NOT NULL DEFAULT '',
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE grants (
    id         uuid PRIMARY KEY,
    profile    text NOT NULL REFERENCES profiles(name) ON DELETE CASCADE,
    tool       text NOT NULL,                    -- a tool name or an fnmatch pattern (notion__*)
    read_only  boolean NOT NULL DEFAULT false,
    reason     text NOT NULL DEFAULT '',
    granted_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX grants_profile ON grants (profile);
