-- What an upstream declared of a tool besides its name, description, schema and annotations
-- (issue 16 item 6): agents get it in tools/list as the upstream declared it.
ALTER TABLE tools ADD COLUMN title text;
ALTER TABLE tools ADD COLUMN output_schema jsonb;
ALTER TABLE tools ADD COLUMN icons jsonb;
ALTER TABLE tools ADD COLUMN meta jsonb;
-- The admin's own name for a tool whose upstream name MCP does not allow (issue 16 item 9):
-- registered as <alias>__<local_name>, called upstream as upstream_name. NULL: the upstream's name.
ALTER TABLE tools ADD COLUMN local_name text;
