-- Soniq schema, version 6: every job says which process enqueued it.

-- SONIQ_PRODUCER_ID of the enqueuing process (by default "<hostname>:<pid>"), stamped
-- by every enqueue path (enqueue, enqueue_many, a caller's transaction, the
-- scheduler). NULL for rows written before this migration and for dead-letter replays.
-- A nullable column without a default: adding it rewrites nothing, whatever the size
-- of the table.
ALTER TABLE soniq_jobs ADD COLUMN producer_id text;
