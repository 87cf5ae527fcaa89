-- Soniq schema, version 2: what `soniq scheduler` needs on top of soniq_recurring_jobs.

-- Opt-in catch-up: enqueue every run missed while no scheduler was up, instead of
-- skipping them and counting the next run from now.
ALTER TABLE soniq_recurring_jobs
    ADD COLUMN catch_up boolean NOT NULL DEFAULT false;

-- The scheduler's tick looks for active schedules that are due.
CREATE INDEX soniq_recurring_jobs_due_idx
    ON soniq_recurring_jobs (next_run_at)
    WHERE status = 'active';
