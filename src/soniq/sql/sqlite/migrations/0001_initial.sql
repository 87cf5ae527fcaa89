-- Soniq schema for SQLite (the sqlite:/// and in-memory backends), version 1.
-- The same tables and column names as the PostgreSQL schema after its migrations
-- 0001..0003, in SQLite's types: ids are canonical uuid TEXT, times REAL Unix epoch
-- seconds (UTC, rounded to the microsecond like timestamptz), JSON TEXT, booleans
-- INTEGER 0/1, arrays JSON TEXT. STRICT tables refuse a value of the wrong type, so an
-- encoding mistake fails loudly instead of storing text where a time belongs.
-- Applied by SqliteStore.setup() inside one BEGIN IMMEDIATE transaction.

CREATE TABLE IF NOT EXISTS soniq_migrations (
    version    TEXT PRIMARY KEY,
    applied_at REAL NOT NULL
) STRICT;

CREATE TABLE soniq_jobs (
    id                  TEXT    PRIMARY KEY,
    job_name            TEXT    NOT NULL,
    args                TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(args)),
    queue               TEXT    NOT NULL DEFAULT 'default',
    priority            INTEGER NOT NULL DEFAULT 100 CHECK (priority BETWEEN 1 AND 1000),
    status              TEXT    NOT NULL DEFAULT 'queued'
                        CHECK (status IN ('queued', 'processing', 'done', 'cancelled')),
    -- Counts claims, and fences every write of an attempt (see the PostgreSQL schema).
    attempts            INTEGER NOT NULL DEFAULT 0,
    max_attempts        INTEGER NOT NULL DEFAULT 4 CHECK (max_attempts >= 1),
    dedup_key           TEXT,
    scheduled_at        REAL    NOT NULL,
    created_at          REAL    NOT NULL,
    updated_at          REAL    NOT NULL,
    started_at          REAL,
    finished_at         REAL,
    worker_id           TEXT,
    result              TEXT,
    last_error          TEXT,
    cancel_requested_at REAL,
    headers             TEXT
) STRICT;

-- The claim: only claimable rows, in claim order.
CREATE INDEX soniq_jobs_claim_idx
    ON soniq_jobs (priority, scheduled_at, id)
    WHERE status = 'queued';

-- Dedup: one queued job per (task name, key). The upserts name this index's columns
-- and predicate as their conflict target.
CREATE UNIQUE INDEX soniq_jobs_dedup_idx
    ON soniq_jobs (job_name, dedup_key)
    WHERE status = 'queued' AND dedup_key IS NOT NULL;

-- Jobs in flight, for stale-worker recovery and cancel_requests.
CREATE INDEX soniq_jobs_worker_idx
    ON soniq_jobs (worker_id)
    WHERE worker_id IS NOT NULL;

-- Retention sweeps finished rows oldest first.
CREATE INDEX soniq_jobs_finished_idx
    ON soniq_jobs (finished_at)
    WHERE status IN ('done', 'cancelled');

-- list_jobs pages newest first; without this it sorts the whole table per page.
CREATE INDEX soniq_jobs_created_idx
    ON soniq_jobs (created_at);

CREATE TABLE soniq_workers (
    id             TEXT    PRIMARY KEY,
    hostname       TEXT    NOT NULL,
    pid            INTEGER NOT NULL,
    queues         TEXT CHECK (queues IS NULL OR json_type(queues) = 'array'),
    concurrency    INTEGER NOT NULL,
    started_at     REAL    NOT NULL,
    last_heartbeat REAL    NOT NULL
) STRICT;

CREATE TABLE soniq_dead_letter_jobs (
    id                  TEXT    PRIMARY KEY,
    job_name            TEXT    NOT NULL,
    args                TEXT    NOT NULL CHECK (json_valid(args)),
    queue               TEXT    NOT NULL,
    priority            INTEGER NOT NULL,
    attempts            INTEGER NOT NULL,
    max_attempts        INTEGER NOT NULL,
    reason              TEXT    NOT NULL,
    last_error          TEXT,
    traceback           TEXT,
    original_created_at REAL    NOT NULL,
    dead_lettered_at    REAL    NOT NULL,
    resurrection_count  INTEGER NOT NULL DEFAULT 0,
    last_resurrected_at REAL
) STRICT;

CREATE INDEX soniq_dead_letter_jobs_name_idx
    ON soniq_dead_letter_jobs (job_name, dead_lettered_at);

-- Every dead-letter listing and bulk operation walks (dead_lettered_at, id) newest first.
CREATE INDEX soniq_dead_letter_jobs_time_idx
    ON soniq_dead_letter_jobs (dead_lettered_at, id);

CREATE TABLE soniq_recurring_jobs (
    name             TEXT    PRIMARY KEY,
    cron             TEXT,
    interval_seconds REAL,
    timezone         TEXT    NOT NULL DEFAULT 'UTC',
    args             TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(args)),
    queue            TEXT,
    priority         INTEGER,
    status           TEXT    NOT NULL DEFAULT 'active'
                     CHECK (status IN ('active', 'paused')),
    catch_up         INTEGER NOT NULL DEFAULT 0 CHECK (catch_up IN (0, 1)),
    next_run_at      REAL,
    last_run_at      REAL,
    created_at       REAL    NOT NULL,
    updated_at       REAL    NOT NULL,
    CHECK ((cron IS NULL) <> (interval_seconds IS NULL))
) STRICT;

CREATE INDEX soniq_recurring_jobs_due_idx
    ON soniq_recurring_jobs (next_run_at)
    WHERE status = 'active';
