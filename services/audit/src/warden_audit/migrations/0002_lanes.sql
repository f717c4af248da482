-- Lanes: the one hash chain becomes 4 independent chains ("lanes"), so that writers of
-- different processes and replicas extend different lanes at the same time.
--
-- Numbering (see chain.py): a row at place n (1, 2, ...) of lane L has seq = n * lanes + L,
-- so seq is unique across the table, names its lane (seq % lanes) and its place (seq / lanes).
-- Rows stored before this migration (seq <= base) stay as they are: they are lane 0, one after
-- another (place = seq), and lane 0 goes on from the last of them; lanes 1.. start at place
-- `base`, linked to the zero hash. No existing row is rewritten and every one still verifies.

CREATE TABLE chain_layout (
    one          boolean PRIMARY KEY DEFAULT true CHECK (one),
    lanes        smallint NOT NULL CHECK (lanes BETWEEN 1 AND 64),
    base         bigint   NOT NULL
);
INSERT INTO chain_layout (lanes, base) SELECT 4, seq FROM chain_head;

-- A row's lane (0 for the rows already stored: a default, no table rewrite). The tail and
-- verify read a lane in seq order through (lane, seq), which replaces the index on seq alone.
ALTER TABLE events ADD COLUMN lane smallint NOT NULL DEFAULT 0;
CREATE INDEX events_lane ON events (lane, seq);
DROP INDEX events_seq;

-- One head per lane: the place, seq and hash of its last row. A batch locks one (FOR UPDATE
-- SKIP LOCKED) until it commits. A new name, not chain_head: a replica still running the
-- single-chain code (a rolling upgrade) then fails to lock a head and retries, storing and
-- acking nothing, instead of moving every lane's head with its UPDATE (which has no WHERE).
CREATE TABLE chain_lanes (
    lane         smallint PRIMARY KEY,
    lane_seq     bigint      NOT NULL,
    seq          bigint      NOT NULL,
    hash         bytea       NOT NULL,
    ingested_at  timestamptz NOT NULL
);
INSERT INTO chain_lanes (lane, lane_seq, seq, hash, ingested_at)
    SELECT 0, seq, seq, hash, ingested_at FROM chain_head;
INSERT INTO chain_lanes (lane, lane_seq, seq, hash, ingested_at)
    SELECT l, b.base, b.base * b.lanes + l, '\x0000000000000000000000000000000000000000000000000000000000000000',
           '1970-01-01T00:00:00Z'
    FROM chain_layout b, generate_series(1, b.lanes - 1) l;
DROP TABLE chain_head;

-- Retention's anchor, per lane: the last row it removed from each lane. (The single-chain
-- code's upsert names the old key column `one`, so it fails here too.)
CREATE TABLE chain_lane_anchor (
    lane         smallint PRIMARY KEY,
    seq          bigint NOT NULL,
    hash         bytea  NOT NULL
);
INSERT INTO chain_lane_anchor (lane, seq, hash) SELECT 0, seq, hash FROM chain_anchor;
DROP TABLE chain_anchor;
ALTER TABLE chain_lane_anchor RENAME TO chain_anchor;
ALTER INDEX chain_lane_anchor_pkey RENAME TO chain_anchor_pkey;
