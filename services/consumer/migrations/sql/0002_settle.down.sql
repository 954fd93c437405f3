DROP TABLE pipeline_offsets;
DROP INDEX processed_events_item ON processed_events;
ALTER TABLE processed_events
    DROP COLUMN namespace,
    DROP COLUMN item_id,
    DROP COLUMN metric,
    DROP COLUMN delta,
    DROP COLUMN version;
