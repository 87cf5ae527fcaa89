-- Soniq schema for SQLite, version 3: the PostgreSQL schema's migration 0005 (delayed
-- jobs in an index of their own, per-minute stats), in SQLite's types.

ALTER TABLE soniq_jobs ADD COLUMN delayed INTEGER NOT NULL DEFAULT 0 CHECK (delayed IN (0, 1));

UPDATE soniq_jobs SET delayed = 1
WHERE status = 'queued' AND scheduled_at > (julianday('now') - 2440587.5) * 86400.0;

DROP INDEX soniq_jobs_claim_idx;

CREATE INDEX soniq_jobs_claim_idx
    ON soniq_jobs (priority, scheduled_at, id)
    WHERE status = 'queued' AND delayed = 0;

CREATE INDEX soniq_jobs_delayed_idx
    ON soniq_jobs (scheduled_at)
    WHERE status = 'queued' AND delayed = 1;

-- list_jobs now pages by id (UUIDv7: creation order) through the primary key.
DROP INDEX soniq_jobs_created_idx;

CREATE TABLE soniq_stats (
    minute      REAL    NOT NULL,
    queue       TEXT    NOT NULL,
    job_name    TEXT    NOT NULL,
    done        INTEGER NOT NULL DEFAULT 0,
    retried     INTEGER NOT NULL DEFAULT 0,
    dead        INTEGER NOT NULL DEFAULT 0,
    cancelled   INTEGER NOT NULL DEFAULT 0,
    runtime_sum REAL    NOT NULL DEFAULT 0,
    runtime_max REAL    NOT NULL DEFAULT 0,
    PRIMARY KEY (minute, queue, job_name)
) STRICT;
