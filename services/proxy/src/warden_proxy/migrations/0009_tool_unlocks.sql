-- Tools a client found through tool_search (issue 16 item 8): listed for that client on every
-- replica. `client` is the MCP session (session:<id>) or, for stateless clients, the agent key
-- (key:<kind>:<id>); `owner` the caller that searched. Bounded per client, and expiring.
CREATE TABLE tool_unlocks (
    client     text NOT NULL,
    owner      text NOT NULL,
    profile    text NOT NULL,
    tool       text NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (client, owner, profile, tool)
);
CREATE INDEX tool_unlocks_expiry ON tool_unlocks (expires_at);
