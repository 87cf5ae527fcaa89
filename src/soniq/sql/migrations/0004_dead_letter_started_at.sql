-- Soniq schema, version 4: the dead-letter table keeps when the last attempt started.

-- Copied from soniq_jobs.started_at when a job is dead-lettered (by the worker or by
-- stale-worker recovery), so a dead letter says when its final attempt began. NULL for
-- rows dead-lettered before this migration and for imports of older export files.
-- A nullable column without a default: adding it rewrites nothing, whatever the size
-- of the table.
ALTER TABLE soniq_dead_letter_jobs ADD COLUMN started_at timestamptz;
