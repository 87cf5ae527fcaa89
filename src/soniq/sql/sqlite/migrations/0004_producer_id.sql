-- Soniq's SQLite schema, version 4: the twin of PostgreSQL's 0006_producer_id.

-- SONIQ_PRODUCER_ID of the process that enqueued the job; NULL for older rows and for
-- dead-letter replays.
ALTER TABLE soniq_jobs ADD COLUMN producer_id TEXT;
