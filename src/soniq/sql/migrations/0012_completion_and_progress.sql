-- Soniq schema, version 12: finishing a job in the handler's own transaction, job
-- progress, and waiting for a job's outcome.

-- One row naming this database. ctx.complete(conn) reads it through the caller's
-- connection: a connection whose soniq_instance is missing or holds another id points
-- at another database (SONIQ_NOT_SAME_DATABASE). A table rather than
-- pg_control_system(), which needs privileges an application role seldom has.
CREATE TABLE soniq_instance (
    id          uuid        NOT NULL DEFAULT gen_random_uuid(),
    singleton   boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    created_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO soniq_instance DEFAULT VALUES;

-- progress: the latest value a handler reported (ctx.progress), written at most once
-- per SONIQ_PROGRESS_INTERVAL and fenced on the attempt. Not indexed, so its updates
-- can be HOT. watched: someone waits for this job (enqueue(watch=True), a handle's
-- wait); only watched jobs send events on soniq_job_events, so that an unwatched
-- workload never takes NOTIFY's commit lock. Both have constant defaults: adding them
-- rewrites no table.
ALTER TABLE soniq_jobs
    ADD COLUMN progress jsonb,
    ADD COLUMN watched  boolean NOT NULL DEFAULT false;
ALTER TABLE soniq_dead_letter_jobs
    ADD COLUMN progress jsonb,
    ADD COLUMN watched  boolean NOT NULL DEFAULT false;
