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

-- What became of one attempt whose handler completed it in a transaction of its own
-- (ctx.complete): 'done' (that transaction committed), 'processing' (it did not: rolled
-- back, or never committed), or 'lost' (the row is no longer this attempt's). While
-- the row reads 'processing' to a plain read, a transaction completing it may still be
-- in flight: the row lock is then waited for, at most p_wait_ms (lock_not_available
-- after that), and the row read again.
CREATE FUNCTION soniq_attempt_state(p_id uuid, p_attempt integer, p_wait_ms integer)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_status text;
    v_attempts integer;
BEGIN
    SELECT status, attempts INTO v_status, v_attempts FROM soniq_jobs WHERE id = p_id;
    IF v_status = 'processing' AND v_attempts = p_attempt THEN
        PERFORM set_config('lock_timeout', p_wait_ms::text || 'ms', true);
        SELECT status, attempts INTO v_status, v_attempts
        FROM soniq_jobs WHERE id = p_id FOR UPDATE;
    END IF;
    IF v_status IS NULL OR v_attempts <> p_attempt OR v_status NOT IN ('done', 'processing')
    THEN
        RETURN 'lost';
    END IF;
    RETURN v_status;
END
$$;
