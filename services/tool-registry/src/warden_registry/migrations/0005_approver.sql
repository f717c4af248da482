-- Who may decide a held call of a tool (issue 16 item 2): `admin`, `user` (the end user the
-- call acts for, asked at the client) or `any`. NULL: the connector's default, and without
-- one the proxy's (admin for write tools, user for read tools).
ALTER TABLE tools ADD COLUMN approver text CHECK (approver IN ('admin', 'user', 'any'));
ALTER TABLE connector_settings ADD COLUMN approver_default text CHECK (approver_default IN ('admin', 'user', 'any'));
