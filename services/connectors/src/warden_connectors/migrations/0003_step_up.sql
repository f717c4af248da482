-- Scope step-up for the organization's connection: an upstream answered `403 insufficient_scope`
-- to a call; the union of held and required scopes waits here for the admin's next authorization
-- (which asks for them) and is cleared when that consent completes. No secrets.
ALTER TABLE connectors ADD COLUMN step_up_scopes text[] NOT NULL DEFAULT '{}';
