-- issue 16 item 10d: a person's consent starts at Warden (/connect/start/<nonce>), which binds
-- it to the browser that opened it (a cookie the callback asks back) and then sends that browser
-- to the provider. The provider's authorization URL waits here; `opened_at` makes the start
-- work in one browser only.
ALTER TABLE oauth_flows ADD COLUMN authorize_url text;
ALTER TABLE oauth_flows ADD COLUMN opened_at timestamptz;
