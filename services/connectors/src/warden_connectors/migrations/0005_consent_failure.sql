-- The organization's last refused consent (reason and when), since its last connection: what
-- `warden connectors add/reconnect` wait on, and what `show` says. Cleared when a consent succeeds.
ALTER TABLE connectors ADD COLUMN consent_failed_at timestamptz;
ALTER TABLE connectors ADD COLUMN consent_failed_reason text;
