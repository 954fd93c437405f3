-- What the counter needs to settle state it rebuilt from MySQL while events
-- were still in flight (docs/pipeline.md, "Settling a rebuild").
--
-- processed_events records, for increments, which item and metric the event
-- changed by how much, and its version (the outbox stream id as a number):
-- the counter subtracts increments newer than a rebuild's boundary, which it
-- already counted in Redis. API_CALL events keep the defaults.
ALTER TABLE processed_events
    ADD COLUMN namespace VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL DEFAULT '',
    ADD COLUMN item_id VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL DEFAULT '',
    ADD COLUMN metric VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL DEFAULT '',
    ADD COLUMN delta BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN version BIGINT UNSIGNED NOT NULL DEFAULT 0;

CREATE INDEX processed_events_item ON processed_events (namespace, item_id, version);

-- pipeline_offsets says how far the consumer got: every message of the
-- partition below next_offset has been applied (or dead-lettered). It is
-- written in the transaction that applies the messages and only ever grows.
CREATE TABLE pipeline_offsets (
    topic VARCHAR(249) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    partition_id INT NOT NULL,
    next_offset BIGINT NOT NULL,
    PRIMARY KEY (topic, partition_id)
);
