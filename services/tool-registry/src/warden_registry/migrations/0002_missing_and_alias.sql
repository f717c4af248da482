-- a registered tool the upstream no longer lists: hidden from agents until it returns
ALTER TABLE tools ADD COLUMN missing boolean NOT NULL DEFAULT false;
-- the alias a connector's tools are registered under (default: the connector name)
ALTER TABLE connector_settings ADD COLUMN alias text;
CREATE INDEX grants_tool ON grants (tool);
