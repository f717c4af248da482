-- Issue 16 item 11d: each executions row signed (HMAC-SHA256 under the chain key, which the
-- database never holds) in the transaction that upserts it; `verify` checks every row.
ALTER TABLE executions ADD COLUMN mac bytea;
