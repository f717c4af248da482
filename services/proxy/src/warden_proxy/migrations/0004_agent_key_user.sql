ALTER TABLE agent_keys ADD COLUMN user_id text;
