-- Soniq schema, version 5: claims and status that stay cheap on a big table.

-- A job written with a scheduled_at still in the future (a schedule(), a retry or snooze
-- with a delay) is "delayed": it waits in an index of its own, ordered by time, and a
-- worker clears the flag once the time has come (promote_due_jobs). Every row left in
-- the claim index is then due, so a claim never walks rows that are not; before, with
-- scheduled_at the second column of the claim index, a claim with a million jobs due
-- tomorrow walked all of them on every poll and every NOTIFY.
ALTER TABLE soniq_jobs ADD COLUMN delayed boolean NOT NULL DEFAULT false;

UPDATE soniq_jobs SET delayed = true WHERE status = 'queued' AND scheduled_at > now();

DROP INDEX soniq_jobs_claim_idx;

CREATE INDEX soniq_jobs_claim_idx
    ON soniq_jobs (priority, scheduled_at, id)
    WHERE status = 'queued' AND NOT delayed;

CREATE INDEX soniq_jobs_delayed_idx
    ON soniq_jobs (scheduled_at)
    WHERE status = 'queued' AND delayed;

-- What finished, per minute, queue and task name, as the workers counted it: the
-- finished figures of `soniq status` read this small table instead of counting the
-- finished rows of soniq_jobs. Each worker adds its counts every few seconds with one
-- upsert (stats_flush); cancel_job and stale-worker recovery add theirs as they write.
-- Rows older than a week are deleted by the workers' retention sweep.
CREATE TABLE soniq_stats (
    minute      timestamptz      NOT NULL,
    queue       text             NOT NULL,
    job_name    text             NOT NULL,
    done        integer          NOT NULL DEFAULT 0,
    retried     integer          NOT NULL DEFAULT 0,
    dead        integer          NOT NULL DEFAULT 0,
    cancelled   integer          NOT NULL DEFAULT 0,
    -- Handler run time of the attempts counted here (seconds): total and longest.
    runtime_sum double precision NOT NULL DEFAULT 0,
    runtime_max double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (minute, queue, job_name)
);
