-- Which upstream account a connection was linked to (the `email` or `sub` claim of the ID token
-- or JWT access token the consent returned), shown in the connection view and the audit event
-- so a consent completed by the wrong person is seen. Not a secret.
ALTER TABLE tokens ADD COLUMN account text;
