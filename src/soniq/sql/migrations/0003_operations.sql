-- Soniq schema, version 3: what operators need on top of the worker.

-- Cooperative cancellation of a running job: cancel_job() stamps this on a
-- 'processing' row and the worker that runs it asks the handler to stop.
ALTER TABLE soniq_jobs ADD COLUMN cancel_requested_at timestamptz;

-- Propagation headers written by the producer (for example a W3C traceparent), so a
-- trace can run from the request that enqueued a job into the worker that runs it.
ALTER TABLE soniq_jobs ADD COLUMN headers jsonb;

-- Retention: the cleanup sweep deletes finished rows oldest first, and `soniq
-- status` counts what finished in the last minute. Only finished rows enter it.
CREATE INDEX soniq_jobs_finished_idx
    ON soniq_jobs (finished_at)
    WHERE status IN ('done', 'cancelled');

-- Dead-letter filters by time (list, replay_many, purge, export).
CREATE INDEX soniq_dead_letter_jobs_time_idx
    ON soniq_dead_letter_jobs (dead_lettered_at);
