-- the id (in connectors) of the connector a tool was registered against: a connector removed and
-- created again under the same name is another connector, whose tools must be registered anew.
-- NULL: registered before ids were recorded; the next listing of the connector records it.
ALTER TABLE tools ADD COLUMN connector_id text;
CREATE INDEX tools_connector_id ON tools (connector, connector_id);
