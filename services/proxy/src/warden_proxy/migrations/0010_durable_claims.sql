-- Durable calls are claimed before they run (issue 16 item 11c): one handler owns a key
-- (`claimed_by`, a lease kept fresh while it runs; a lapsed lease is taken over), every other
-- delivery of that key waits for its result. `fingerprint` (SHA-256 of tool, arguments, user)
-- refuses the same key for another call. Rows from before have neither: the first claim
-- takes them over and adopts its fingerprint.
ALTER TABLE durable_calls
    ADD COLUMN fingerprint   text,
    ADD COLUMN claimed_by    text,
    ADD COLUMN claimed_until timestamptz;
