-- Soniq schema, version 1.
-- Applied by `soniq setup` / `await app.setup()` inside one transaction that holds
-- an advisory lock, so concurrent runs serialise and a failure leaves nothing behind.

CREATE TABLE soniq_jobs (
    id            uuid        PRIMARY KEY,
    job_name      text        NOT NULL,
    args          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    queue         text        NOT NULL DEFAULT 'default',
    priority      integer     NOT NULL DEFAULT 100 CHECK (priority BETWEEN 1 AND 1000),
    status        text        NOT NULL DEFAULT 'queued'
                  CHECK (status IN ('queued', 'processing', 'done', 'cancelled')),
    -- attempts counts claims: a claim is an attempt at once, so a job that kills its
    -- worker every time still runs out of attempts. It is also the fencing token that
    -- completion statements must match.
    attempts      integer     NOT NULL DEFAULT 0,
    max_attempts  integer     NOT NULL DEFAULT 4 CHECK (max_attempts >= 1),
    dedup_key     text,
    scheduled_at  timestamptz NOT NULL DEFAULT now(),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    finished_at   timestamptz,
    worker_id     uuid,
    result        jsonb,
    last_error    text
);

-- The claim query's index: only claimable rows, in claim order. Finished rows never
-- enter it, so it stays small however large the table grows.
CREATE INDEX soniq_jobs_claim_idx
    ON soniq_jobs (priority, scheduled_at, id)
    WHERE status = 'queued';

-- Dedup: one queued job per (task name, key). unique=True stores an args hash here.
CREATE UNIQUE INDEX soniq_jobs_dedup_idx
    ON soniq_jobs (job_name, dedup_key)
    WHERE status = 'queued' AND dedup_key IS NOT NULL;

-- The jobs in flight: worker_id is set by a claim and cleared when the attempt ends,
-- so stale-worker recovery finds a dead worker's jobs without a scan. (A predicate on
-- status would also match the acknowledgement's filter, and with a queue table's
-- always-stale statistics the planner would pick it over the primary key.)
CREATE INDEX soniq_jobs_worker_idx
    ON soniq_jobs (worker_id)
    WHERE worker_id IS NOT NULL;

-- A queue table turns over all the time: vacuum it after a fixed number of dead rows
-- rather than a fifth of the table, so dead index entries left by claimed jobs do not
-- pile up in front of the claim query.
ALTER TABLE soniq_jobs SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 5000,
    autovacuum_vacuum_cost_delay = 0,
    autovacuum_analyze_scale_factor = 0.05
);

CREATE TABLE soniq_workers (
    id              uuid        PRIMARY KEY,
    hostname        text        NOT NULL,
    pid             integer     NOT NULL,
    queues          text[],
    concurrency     integer     NOT NULL,
    started_at      timestamptz NOT NULL DEFAULT now(),
    last_heartbeat  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE soniq_dead_letter_jobs (
    id                  uuid        PRIMARY KEY,
    job_name            text        NOT NULL,
    args                jsonb       NOT NULL,
    queue               text        NOT NULL,
    priority            integer     NOT NULL,
    attempts            integer     NOT NULL,
    max_attempts        integer     NOT NULL,
    reason              text        NOT NULL,
    last_error          text,
    traceback           text,
    original_created_at timestamptz NOT NULL,
    dead_lettered_at    timestamptz NOT NULL DEFAULT now(),
    resurrection_count  integer     NOT NULL DEFAULT 0,
    last_resurrected_at timestamptz
);

CREATE INDEX soniq_dead_letter_jobs_name_idx
    ON soniq_dead_letter_jobs (job_name, dead_lettered_at);

CREATE TABLE soniq_recurring_jobs (
    name             text        PRIMARY KEY,
    cron             text,
    interval_seconds double precision,
    timezone         text        NOT NULL DEFAULT 'UTC',
    args             jsonb       NOT NULL DEFAULT '{}'::jsonb,
    queue            text,
    priority         integer,
    status           text        NOT NULL DEFAULT 'active'
                     CHECK (status IN ('active', 'paused')),
    next_run_at      timestamptz,
    last_run_at      timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CHECK ((cron IS NULL) <> (interval_seconds IS NULL))
);
