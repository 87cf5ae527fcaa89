-- Named queries of the SQLite store (soniq.storage.sqlite_engine), one per PostgreSQL query in
-- soniq/sql/queries.sql except the PostgreSQL-only ones, with the same parameters and
-- the same output columns in the same order. Conventions:
-- * %(now)s is the store's clock (Unix seconds, rounded to the microsecond, one value
--   per transaction) wherever PostgreSQL reads now(). Times computed from it are rounded
--   the same way, so a time read back and passed in again compares equal.
-- * Lists arrive as JSON text: json_each(%(queues)s) stands for = ANY(%(queues)s), and
--   NULL still means "no filter".
-- * A query may hold several statements separated by ";". Its result is the rows of its
--   LAST statement; earlier ones hand rows on through temp.soniq_scratch, a table private
--   to the store's connection (see store_scratch), cleared by the query that uses it.
-- * An output column aliased "name [uuid]" is a bare uuid column in PostgreSQL; the store
--   returns it as uuid.UUID under "name". Other columns are decoded by name (see the
--   store's docstring).
-- * The store writes every transaction with BEGIN IMMEDIATE (one writer at a time), so
--   PostgreSQL's FOR UPDATE [SKIP LOCKED] has nothing to do here and is left out.
-- * LIMIT NULL means no limit, as in PostgreSQL (SQLite spells that -1).

-- name: insert_job
INSERT INTO soniq_jobs
    (id, job_name, args, queue, priority, max_attempts, dedup_key, scheduled_at,
     created_at, updated_at, headers, delayed, producer_id, limit_key, watched)
VALUES (
    %(id)s, %(job_name)s, %(args)s, %(queue)s, %(priority)s, %(max_attempts)s,
    %(dedup_key)s, COALESCE(%(scheduled_at)s, %(now)s), %(now)s, %(now)s, %(headers)s,
    COALESCE(%(scheduled_at)s > %(now)s, 0), %(producer_id)s, %(limit_key)s,
    COALESCE(%(watched)s, 0)
)
ON CONFLICT (job_name, dedup_key) WHERE status = 'queued' AND dedup_key IS NOT NULL
DO NOTHING
RETURNING id AS id, '' AS pg_notify

-- name: insert_job_plain
INSERT INTO soniq_jobs
    (id, job_name, args, queue, priority, max_attempts, scheduled_at, created_at,
     updated_at, headers, delayed, producer_id, limit_key, watched)
VALUES (
    %(id)s, %(job_name)s, %(args)s, %(queue)s, %(priority)s, %(max_attempts)s,
    COALESCE(%(scheduled_at)s, %(now)s), %(now)s, %(now)s, %(headers)s,
    COALESCE(%(scheduled_at)s > %(now)s, 0), %(producer_id)s, %(limit_key)s,
    COALESCE(%(watched)s, 0)
)

-- name: insert_jobs
-- ids, args (JSON texts), dedup_keys and limit_keys are parallel JSON arrays. "WHERE
-- true" keeps SQLite from reading ON CONFLICT as a join constraint of the SELECT.
INSERT INTO soniq_jobs
    (id, job_name, args, queue, priority, max_attempts, dedup_key, scheduled_at,
     created_at, updated_at, headers, delayed, producer_id, limit_key, watched)
SELECT i.value, %(job_name)s, a.value, %(queue)s, %(priority)s, %(max_attempts)s, d.value,
       COALESCE(%(scheduled_at)s, %(now)s), %(now)s, %(now)s, %(headers)s,
       COALESCE(%(scheduled_at)s > %(now)s, 0), %(producer_id)s, l.value, COALESCE(%(watched)s, 0)
FROM json_each(%(ids)s) AS i
JOIN json_each(%(args)s) AS a ON a.key = i.key
JOIN json_each(%(dedup_keys)s) AS d ON d.key = i.key
LEFT JOIN json_each(%(limit_keys)s) AS l ON l.key = i.key
WHERE true
ORDER BY i.key
ON CONFLICT (job_name, dedup_key) WHERE status = 'queued' AND dedup_key IS NOT NULL
DO NOTHING
RETURNING id AS id

-- name: find_queued_duplicates
SELECT dedup_key, id FROM soniq_jobs
WHERE job_name = %(job_name)s AND status = 'queued'
  AND dedup_key IN (SELECT value FROM json_each(%(dedup_keys)s))

-- name: find_queued_duplicate
SELECT id FROM soniq_jobs
WHERE job_name = %(job_name)s AND dedup_key = %(dedup_key)s AND status = 'queued'
LIMIT 1

-- name: notify_queues
-- Nobody listens (SQLite workers poll): one empty row per queue, as pg_notify gives.
SELECT '' AS pg_notify FROM json_each(%(queues)s)

-- name: notify_delayed
-- Nobody listens: the row pg_notify gives when the jobs are for later.
SELECT '' AS pg_notify WHERE %(scheduled_at)s > %(now)s

-- name: watch_jobs
-- One writer at a time: mark the live jobs watched, then read them all (job_states).
-- Nothing is notified on SQLite; the mark keeps the rows' meaning the same as on
-- PostgreSQL.
UPDATE soniq_jobs SET watched = 1
WHERE id IN (SELECT value FROM json_each(%(ids)s))
  AND status IN ('queued', 'processing') AND watched = 0;
-- include: _job_states

-- name: job_states
-- include: _job_states

-- name: _job_states
-- The state of each job of %(ids)s, waiting or dead-lettered (see soniq.waiting).
SELECT id, status, result, last_error, attempts, progress, finished_at,
       status = 'done' AND finished_at IS NOT NULL
       AND finished_at <= %(now)s - %(ttl)s AS expired,
       watched
FROM soniq_jobs
WHERE id IN (SELECT value FROM json_each(%(ids)s))
UNION ALL
SELECT id, 'dead_letter', NULL, COALESCE(last_error, reason), attempts, progress,
       dead_lettered_at, 0, watched
FROM soniq_dead_letter_jobs
WHERE id IN (SELECT value FROM json_each(%(ids)s))

-- name: get_job
SELECT id, job_name, args, queue, priority, status, attempts, max_attempts,
       dedup_key, scheduled_at, created_at, updated_at, started_at, finished_at,
       worker_id, result, last_error, cancel_requested_at, producer_id, progress
FROM soniq_jobs WHERE id = %(id)s

-- name: job_created_at
SELECT created_at FROM soniq_jobs WHERE id = %(id)s

-- name: get_dead_letter_job
SELECT id, job_name, args, queue, priority, 'dead_letter' AS status, attempts,
       max_attempts, NULL AS dedup_key, NULL AS scheduled_at,
       original_created_at AS created_at, dead_lettered_at AS updated_at,
       started_at, dead_lettered_at AS finished_at,
       NULL AS worker_id, NULL AS result, last_error,
       NULL AS cancel_requested_at, NULL AS producer_id, progress, reason,
       resurrection_count
FROM soniq_dead_letter_jobs WHERE id = %(id)s

-- name: list_jobs
-- Newest first by id (UUIDv7: creation order) through the primary key; before pages by
-- keyset. since is inclusive, until exclusive, both on created_at.
SELECT id, job_name, args, queue, priority, status, attempts, max_attempts,
       dedup_key, scheduled_at, created_at, updated_at, started_at, finished_at,
       worker_id, result, last_error, cancel_requested_at, producer_id, progress
FROM soniq_jobs
WHERE (%(before)s IS NULL OR id < %(before)s)
  AND (%(status)s IS NULL OR status = %(status)s)
  AND (%(queue)s IS NULL OR queue = %(queue)s)
  AND (%(job_name)s IS NULL OR job_name = %(job_name)s)
  AND (%(since)s IS NULL OR created_at >= %(since)s)
  AND (%(until)s IS NULL OR created_at < %(until)s)
ORDER BY id DESC
LIMIT COALESCE(%(limit)s, -1) OFFSET COALESCE(%(offset)s, 0)

-- name: cancel_job
-- A queued job is cancelled at once; a running one gets a cancel request (the first
-- stamp is kept) that its worker finds through cancel_requests. SET reads the old
-- status, RETURNING the new one; woke is what pg_notify gives PostgreSQL callers. A
-- queued job's cancellation is counted in soniq_stats first.
INSERT INTO soniq_stats (minute, queue, job_name, cancelled)
SELECT CAST(%(now)s / 60 AS INTEGER) * 60.0, queue, job_name, 1 FROM soniq_jobs
WHERE id = %(id)s AND status = 'queued'
ON CONFLICT (minute, queue, job_name) DO UPDATE SET cancelled = soniq_stats.cancelled + 1;
UPDATE soniq_jobs
SET status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END,
    finished_at = CASE WHEN status = 'queued' THEN %(now)s ELSE finished_at END,
    cancel_requested_at = CASE WHEN status = 'processing'
                               THEN COALESCE(cancel_requested_at, %(now)s)
                               ELSE cancel_requested_at END,
    updated_at = %(now)s
WHERE id = %(id)s AND status IN ('queued', 'processing')
RETURNING id AS id, status AS status, CASE WHEN status = 'processing' THEN '' END AS woke,
          watched AS watched

-- name: retry_job_now
-- app.retry_job: a cancelled job goes back to the queue due now, with at least one
-- attempt left and its attempt count (the fence) unchanged; a queued job that already
-- failed becomes due now. Returns the state before, and requeued 1 or 0.
DELETE FROM temp.soniq_scratch;
INSERT INTO temp.soniq_scratch (tag, id, ref, n, at, m)
SELECT 'target', id, status, attempts, scheduled_at,
       status = 'cancelled' OR (status = 'queued' AND attempts > 0)
FROM soniq_jobs WHERE id = %(id)s;
UPDATE soniq_jobs AS j
SET status = 'queued', delayed = 0,
    max_attempts = CASE WHEN t.ref = 'cancelled'
                        THEN max(j.max_attempts, j.attempts + 1)
                        ELSE j.max_attempts END,
    scheduled_at = CASE WHEN t.ref = 'cancelled' THEN %(now)s
                        ELSE min(j.scheduled_at, %(now)s) END,
    started_at = CASE WHEN t.ref = 'cancelled' THEN NULL ELSE j.started_at END,
    finished_at = NULL, cancel_requested_at = NULL, worker_id = NULL, updated_at = %(now)s
FROM temp.soniq_scratch AS t
WHERE t.tag = 'target' AND j.id = t.id AND t.m;
SELECT ref AS status, n AS attempts, at AS scheduled_at, m AS requeued
FROM temp.soniq_scratch WHERE tag = 'target'

-- name: get_result
-- Readable for SONIQ_RESULT_TTL seconds after the job finished.
SELECT result FROM soniq_jobs
WHERE id = %(id)s AND status = 'done'
  AND (finished_at IS NULL OR finished_at > %(now)s - %(ttl)s)

-- name: delete_job
DELETE FROM soniq_jobs WHERE id = %(id)s RETURNING id AS "id [uuid]"

-- name: queue_stats
WITH live AS (
    SELECT queue,
           count(*) FILTER (WHERE status = 'queued')     AS queued,
           count(*) FILTER (WHERE status = 'processing') AS processing,
           count(*) FILTER (WHERE status = 'done')       AS done,
           count(*) FILTER (WHERE status = 'cancelled')  AS cancelled
    FROM soniq_jobs GROUP BY queue
), dead AS (
    SELECT queue, count(*) AS dead_letter FROM soniq_dead_letter_jobs GROUP BY queue
)
SELECT COALESCE(live.queue, dead.queue) AS queue,
       COALESCE(queued, 0) AS queued, COALESCE(processing, 0) AS processing,
       COALESCE(done, 0) AS done, COALESCE(cancelled, 0) AS cancelled,
       COALESCE(dead_letter, 0) AS dead_letter
FROM live FULL JOIN dead ON live.queue = dead.queue
ORDER BY 1

-- name: queue_totals
-- get_queue_stats(): the whole queue's counts by status, and the dead letters.
SELECT count(*) FILTER (WHERE status = 'queued')     AS queued,
       count(*) FILTER (WHERE status = 'processing') AS processing,
       count(*) FILTER (WHERE status = 'done')       AS done,
       count(*) FILTER (WHERE status = 'cancelled')  AS cancelled,
       (SELECT count(*) FROM soniq_dead_letter_jobs) AS dead_letter
FROM soniq_jobs

-- ---------------------------------------------------------------------------------
-- Worker
-- ---------------------------------------------------------------------------------

-- name: claim_jobs
-- Up to %(limit)s runnable jobs in priority order. A claim is an attempt at once, and
-- the new attempt number fences every later write of it.
UPDATE soniq_jobs
SET status = 'processing', attempts = attempts + 1, worker_id = %(worker_id)s,
    started_at = %(now)s, updated_at = %(now)s
WHERE id IN (
    SELECT id FROM soniq_jobs
    WHERE status = 'queued' AND delayed = 0
      AND scheduled_at <= %(now)s
      AND (%(queues)s IS NULL OR queue IN (SELECT value FROM json_each(%(queues)s)))
    ORDER BY priority, scheduled_at, id
    LIMIT COALESCE(%(limit)s, -1)
)
RETURNING id AS id, job_name AS job_name, args AS args, queue AS queue,
          priority AS priority, attempts AS attempt, max_attempts AS max_attempts,
          scheduled_at AS scheduled_at, created_at AS created_at, headers AS headers,
          NULL AS limit_key

-- name: complete_jobs
-- One statement acknowledges a batch; only the attempt that was claimed completes.
-- ids, attempts and results are JSON arrays (the dialect encodes them; a null result:
-- none), element i for job i.
WITH d AS (
    SELECT i.value AS id, a.value AS attempt,
           NULLIF(%(results)s -> CAST(i.key AS INTEGER), 'null') AS result
    FROM json_each(%(ids)s) AS i
    JOIN json_each(%(attempts)s) AS a ON a.key = i.key
)
UPDATE soniq_jobs
SET status = 'done', result = d.result, finished_at = %(now)s, updated_at = %(now)s,
    worker_id = NULL
FROM d
WHERE soniq_jobs.id = d.id AND soniq_jobs.attempts = d.attempt
  AND soniq_jobs.status = 'processing'
RETURNING soniq_jobs.id AS "id [uuid]", soniq_jobs.watched AS watched

-- name: complete_job
-- complete_jobs for a batch of one (as on PostgreSQL, where it saves a plan per call).
UPDATE soniq_jobs
SET status = 'done', result = %(result)s, finished_at = %(now)s, updated_at = %(now)s,
    worker_id = NULL
WHERE id = %(id)s AND attempts = %(attempt)s AND status = 'processing'
RETURNING id AS "id [uuid]", watched AS watched

-- name: write_progress
-- The latest progress of running attempts, fenced like an outcome. ids, attempts and
-- values are JSON arrays (the dialect encodes them), element i for job i; "->" hands
-- each value on as JSON text.
WITH d AS (
    SELECT i.value AS id, a.value AS attempt, %(values)s -> CAST(i.key AS INTEGER) AS p
    FROM json_each(%(ids)s) AS i
    JOIN json_each(%(attempts)s) AS a ON a.key = i.key
)
UPDATE soniq_jobs
SET progress = d.p
FROM d
WHERE soniq_jobs.id = d.id AND soniq_jobs.attempts = d.attempt
  AND soniq_jobs.status = 'processing'
RETURNING soniq_jobs.id AS id, soniq_jobs.watched AS watched

-- name: retry_job
-- A job whose cancellation was requested ends cancelled instead of going back.
UPDATE soniq_jobs
SET status = CASE WHEN cancel_requested_at IS NULL THEN 'queued' ELSE 'cancelled' END,
    finished_at = CASE WHEN cancel_requested_at IS NULL THEN finished_at ELSE %(now)s END,
    worker_id = NULL, last_error = %(error)s, updated_at = %(now)s,
    scheduled_at = round(%(now)s + %(delay)s, 6), delayed = %(delay)s > 0
WHERE id = %(id)s AND attempts = %(attempt)s AND status = 'processing'
RETURNING id AS "id [uuid]", watched AS watched, status AS status

-- name: snooze_job
-- Back to the queue without spending the attempt, unless cancellation was requested.
-- A snooze says so in last_error (SNOOZE[: reason]); a shutdown's requeue passes NULL.
UPDATE soniq_jobs
SET status = CASE WHEN cancel_requested_at IS NULL THEN 'queued' ELSE 'cancelled' END,
    finished_at = CASE WHEN cancel_requested_at IS NULL THEN finished_at ELSE %(now)s END,
    attempts = CASE WHEN cancel_requested_at IS NULL THEN attempts - 1 ELSE attempts END,
    worker_id = NULL, updated_at = %(now)s, last_error = COALESCE(%(error)s, last_error),
    scheduled_at = round(%(now)s + %(delay)s, 6), delayed = %(delay)s > 0
WHERE id = %(id)s AND attempts = %(attempt)s AND status = 'processing'
RETURNING id AS "id [uuid]", watched AS watched, status AS status

-- name: cancel_running_job
UPDATE soniq_jobs
SET status = 'cancelled', finished_at = %(now)s, updated_at = %(now)s, worker_id = NULL
WHERE id = %(id)s AND attempts = %(attempt)s AND status = 'processing'
RETURNING id AS "id [uuid]", watched AS watched

-- name: cancel_requests
SELECT id FROM soniq_jobs
WHERE worker_id = %(worker_id)s
  AND status = 'processing' AND cancel_requested_at IS NOT NULL

-- name: dead_letter_job
-- Move: copy the fenced row, then delete it, in one transaction. The DELETE matches
-- exactly the row the INSERT copied, and its RETURNING is the result.
INSERT INTO soniq_dead_letter_jobs
    (id, job_name, args, queue, priority, attempts, max_attempts, reason, last_error,
     traceback, original_created_at, started_at, dead_lettered_at, limit_key, progress,
     watched)
SELECT id, job_name, args, queue, priority, attempts, max_attempts, %(reason)s,
       %(error)s, %(traceback)s, created_at, started_at, %(now)s, limit_key, progress,
       watched
FROM soniq_jobs
WHERE id = %(id)s AND attempts = %(attempt)s AND status = 'processing';
DELETE FROM soniq_jobs
WHERE id = %(id)s AND attempts = %(attempt)s AND status = 'processing'
RETURNING id AS "id [uuid]", watched AS watched

-- name: register_worker
INSERT INTO soniq_workers (id, hostname, pid, queues, concurrency, started_at, last_heartbeat)
VALUES (%(id)s, %(hostname)s, %(pid)s, %(queues)s, %(concurrency)s, %(now)s, %(now)s)
ON CONFLICT (id) DO UPDATE SET last_heartbeat = %(now)s

-- name: heartbeat
UPDATE soniq_workers SET last_heartbeat = %(now)s WHERE id = %(id)s
RETURNING id AS "id [uuid]", 0 AS control_version

-- name: deregister_worker
DELETE FROM soniq_workers WHERE id = %(id)s

-- name: recover_stale_workers
-- Remove workers silent past the timeout; their jobs, and jobs whose worker row is
-- already gone, go back to the queue, except a last attempt, which is dead-lettered,
-- and a job whose cancellation was requested, which ends cancelled. Once the dead
-- workers are deleted, "lost" is simply "in flight under no registered worker".
DELETE FROM temp.soniq_scratch;
INSERT INTO temp.soniq_scratch (tag, id)
SELECT 'worker', id FROM soniq_workers WHERE last_heartbeat < %(now)s - %(timeout)s;
DELETE FROM soniq_workers
WHERE id IN (SELECT id FROM temp.soniq_scratch WHERE tag = 'worker');
INSERT INTO temp.soniq_scratch (tag, id)
SELECT CASE WHEN j.attempts >= j.max_attempts AND j.cancel_requested_at IS NULL
            THEN 'bury' ELSE 'requeue' END,
       j.id
FROM soniq_jobs AS j
WHERE j.worker_id IS NOT NULL
  AND j.status = 'processing'
  AND NOT EXISTS (SELECT 1 FROM soniq_workers AS w WHERE w.id = j.worker_id);
INSERT INTO soniq_stats (minute, queue, job_name, retried, dead, cancelled)
SELECT CAST(%(now)s / 60 AS INTEGER) * 60.0, j.queue, j.job_name,
       count(*) FILTER (WHERE t.tag = 'requeue' AND j.cancel_requested_at IS NULL),
       count(*) FILTER (WHERE t.tag = 'bury'),
       count(*) FILTER (WHERE t.tag = 'requeue' AND j.cancel_requested_at IS NOT NULL)
FROM temp.soniq_scratch AS t JOIN soniq_jobs AS j ON j.id = t.id
WHERE t.tag IN ('bury', 'requeue')
GROUP BY j.queue, j.job_name
ON CONFLICT (minute, queue, job_name) DO UPDATE SET
    retried = soniq_stats.retried + excluded.retried, dead = soniq_stats.dead + excluded.dead,
    cancelled = soniq_stats.cancelled + excluded.cancelled;
INSERT INTO soniq_dead_letter_jobs
    (id, job_name, args, queue, priority, attempts, max_attempts, reason, last_error,
     original_created_at, started_at, dead_lettered_at, limit_key, progress, watched)
SELECT id, job_name, args, queue, priority, attempts, max_attempts,
       'Worker died during the final attempt.', last_error, created_at, started_at,
       %(now)s, limit_key, progress, watched
FROM soniq_jobs
WHERE id IN (SELECT id FROM temp.soniq_scratch WHERE tag = 'bury');
DELETE FROM soniq_jobs WHERE id IN (SELECT id FROM temp.soniq_scratch WHERE tag = 'bury');
UPDATE soniq_jobs
SET status = CASE WHEN cancel_requested_at IS NULL THEN 'queued' ELSE 'cancelled' END,
    finished_at = CASE WHEN cancel_requested_at IS NULL THEN finished_at ELSE %(now)s END,
    worker_id = NULL, updated_at = %(now)s,
    last_error = 'Worker stopped heartbeating during this attempt.'
WHERE id IN (SELECT id FROM temp.soniq_scratch WHERE tag = 'requeue');
SELECT (SELECT count(*) FROM temp.soniq_scratch WHERE tag = 'worker') AS workers,
       (SELECT count(*) FROM temp.soniq_scratch WHERE tag = 'requeue') AS requeued,
       (SELECT count(*) FROM temp.soniq_scratch WHERE tag = 'bury') AS dead_lettered,
       (SELECT '' FROM soniq_jobs
        WHERE id IN (SELECT id FROM temp.soniq_scratch WHERE tag = 'requeue')
          AND status = 'queued' LIMIT 1) AS woke,
       NULL AS events

-- ---------------------------------------------------------------------------------
-- Metrics
-- ---------------------------------------------------------------------------------

-- name: queue_gauges
SELECT queue, count(*) AS depth, %(now)s - min(scheduled_at) AS oldest_age
FROM soniq_jobs
WHERE status = 'queued' AND scheduled_at <= %(now)s
  AND (%(queues)s IS NULL OR queue IN (SELECT value FROM json_each(%(queues)s)))
GROUP BY queue

-- ---------------------------------------------------------------------------------
-- Retention
-- ---------------------------------------------------------------------------------

-- name: promote_due_jobs
DELETE FROM temp.soniq_scratch;
INSERT INTO temp.soniq_scratch (tag, id, ref)
SELECT 'due', id, queue FROM soniq_jobs
WHERE status = 'queued' AND delayed = 1 AND scheduled_at <= %(now)s
ORDER BY scheduled_at
LIMIT COALESCE(%(limit)s, -1);
UPDATE soniq_jobs SET delayed = 0
WHERE id IN (SELECT id FROM temp.soniq_scratch WHERE tag = 'due');
SELECT (SELECT count(*) FROM temp.soniq_scratch WHERE tag = 'due') AS moved,
       (SELECT count(DISTINCT ref) FROM temp.soniq_scratch WHERE tag = 'due') AS woke,
       (SELECT min(scheduled_at) - %(now)s FROM soniq_jobs
        WHERE status = 'queued' AND delayed = 1 AND scheduled_at > %(now)s) AS next_due

-- name: stats_flush
-- rows: a JSON array of {queue, job_name, done, retried, dead, cancelled, runtime_sum,
-- runtime_max}, added to the rows of the current minute (%(now)s rounded down).
DELETE FROM soniq_stats WHERE minute < %(now)s - 604800;
INSERT INTO soniq_stats
    (minute, queue, job_name, done, retried, dead, cancelled, runtime_sum, runtime_max)
SELECT CAST(%(now)s / 60 AS INTEGER) * 60.0, r.value ->> 'queue', r.value ->> 'job_name',
       r.value ->> 'done', r.value ->> 'retried', r.value ->> 'dead',
       r.value ->> 'cancelled', r.value ->> 'runtime_sum', r.value ->> 'runtime_max'
FROM json_each(%(rows)s) AS r
WHERE true
ON CONFLICT (minute, queue, job_name) DO UPDATE SET
    done = soniq_stats.done + excluded.done, retried = soniq_stats.retried + excluded.retried,
    dead = soniq_stats.dead + excluded.dead,
    cancelled = soniq_stats.cancelled + excluded.cancelled,
    runtime_sum = soniq_stats.runtime_sum + excluded.runtime_sum,
    runtime_max = max(soniq_stats.runtime_max, excluded.runtime_max)

-- name: prune_cutoff
SELECT round(%(now)s - %(older_than)s, 6) AS cutoff

-- name: prune_finished_jobs
-- One batch, oldest first.
DELETE FROM soniq_jobs
WHERE id IN (
    SELECT id FROM soniq_jobs
    WHERE status IN ('done', 'cancelled') AND finished_at < %(cutoff)s
    ORDER BY finished_at
    LIMIT COALESCE(%(limit)s, -1)
);
SELECT changes() AS deleted

-- ---------------------------------------------------------------------------------
-- Status, workers, task names
-- ---------------------------------------------------------------------------------

-- name: queue_status
-- The PostgreSQL query's figures: live counts from soniq_jobs, finished ones from
-- soniq_stats with the same window weights.
WITH parts(queue, runnable, scheduled, processing, oldest_due, done, cancelled, failed,
           done_last_minute, dead_letter) AS (
    SELECT queue, count(*) FILTER (WHERE scheduled_at <= %(now)s),
           count(*) FILTER (WHERE scheduled_at > %(now)s), 0,
           min(scheduled_at) FILTER (WHERE scheduled_at <= %(now)s), 0, 0, 0, 0, 0
    FROM soniq_jobs WHERE status = 'queued' GROUP BY queue
    UNION ALL
    SELECT queue, 0, 0, count(*), NULL, 0, 0, 0, 0, 0
    FROM soniq_jobs WHERE status = 'processing' GROUP BY queue
    UNION ALL
    SELECT queue, 0, 0, 0, NULL, sum(done * hour), sum(cancelled * hour),
           sum((retried + dead) * hour), sum(done * minute_part), 0
    FROM (SELECT st.*,
                 min(1.0, max(0.0, (st.minute + 60 - %(now)s + 3600) / 60.0)) AS hour,
                 min(1.0, max(0.0, (st.minute + 60 - %(now)s + 60) / 60.0)) AS minute_part
          FROM soniq_stats AS st WHERE st.minute > %(now)s - 3660)
    GROUP BY queue
    UNION ALL
    SELECT queue, 0, 0, 0, NULL, 0, 0, 0, 0, count(*)
    FROM soniq_dead_letter_jobs GROUP BY queue
)
SELECT queue, sum(runnable) AS runnable, sum(scheduled) AS scheduled,
       sum(processing) AS processing, CAST(round(sum(done)) AS INTEGER) AS done,
       CAST(round(sum(cancelled)) AS INTEGER) AS cancelled,
       CAST(round(sum(failed)) AS INTEGER) AS failed, sum(dead_letter) AS dead_letter,
       %(now)s - min(oldest_due) AS oldest_runnable_age,
       CAST(round(sum(done_last_minute)) AS INTEGER) AS done_last_minute
FROM parts
GROUP BY queue
ORDER BY queue

-- name: list_workers
SELECT w.id AS id, w.hostname AS hostname, w.pid AS pid, w.queues AS queues,
       w.concurrency AS concurrency, w.started_at AS started_at,
       w.last_heartbeat AS last_heartbeat,
       %(now)s - w.last_heartbeat AS seconds_since_heartbeat,
       w.last_heartbeat < %(now)s - %(timeout)s AS stale,
       (SELECT count(*) FROM soniq_jobs AS j
        WHERE j.worker_id = w.id AND j.status = 'processing') AS jobs_in_flight
FROM soniq_workers AS w
ORDER BY w.started_at, w.id

-- name: task_names_in_use
WITH live AS (
    SELECT job_name,
           count(*) FILTER (WHERE status = 'queued') AS queued,
           count(*) FILTER (WHERE status = 'processing') AS processing
    FROM soniq_jobs WHERE status IN ('queued', 'processing') GROUP BY job_name
), dead AS (
    SELECT job_name, count(*) AS dead_letter FROM soniq_dead_letter_jobs GROUP BY job_name
)
SELECT COALESCE(live.job_name, dead.job_name) AS job_name,
       COALESCE(queued, 0) AS queued, COALESCE(processing, 0) AS processing,
       COALESCE(dead_letter, 0) AS dead_letter
FROM live FULL JOIN dead ON live.job_name = dead.job_name
ORDER BY 1

-- ---------------------------------------------------------------------------------
-- Dead letters
-- ---------------------------------------------------------------------------------

-- The bulk queries share PostgreSQL's filters (NULL: no filter). "reason" is a LIKE
-- pattern (ESCAPE '\') from soniq.filters.like_pattern matched against the reason and
-- the last error; soniq_lower (Python's str.lower, registered by the store) makes it
-- case-insensitive beyond ASCII, as ILIKE is. Newest first, (dead_lettered_at, id)
-- descending, with keyset paging on that pair (before_at/before_id).

-- name: _dead_letter_filter
-- A fragment, not a query: the dead-letter filters (job name, queue, reason or error
-- text as a LIKE pattern, dead-lettered time range), for the queries that include it.
-- Every one of its parameters may be NULL: no filter on that column.
(%(job_name)s IS NULL OR job_name = %(job_name)s)
  AND (%(queue)s IS NULL OR queue = %(queue)s)
  AND (%(reason)s IS NULL
       OR soniq_lower(reason) LIKE soniq_lower(%(reason)s) ESCAPE '\'
       OR soniq_lower(last_error) LIKE soniq_lower(%(reason)s) ESCAPE '\')
  AND (%(since)s IS NULL OR dead_lettered_at >= %(since)s)
  AND (%(until)s IS NULL OR dead_lettered_at < %(until)s)

-- name: dead_letter_list
SELECT id, job_name, args, queue, priority, attempts, max_attempts, reason,
       last_error, traceback, original_created_at, started_at, dead_lettered_at,
       resurrection_count, last_resurrected_at, limit_key
FROM soniq_dead_letter_jobs
WHERE
-- include: _dead_letter_filter
ORDER BY dead_lettered_at DESC, id DESC
LIMIT COALESCE(%(limit)s, -1) OFFSET COALESCE(%(offset)s, 0)

-- name: dead_letter_count
SELECT count(*) AS count
FROM soniq_dead_letter_jobs
WHERE
-- include: _dead_letter_filter

-- name: dead_letter_page
SELECT id, job_name, args, queue, priority, attempts, max_attempts, reason,
       last_error, traceback, original_created_at, started_at, dead_lettered_at,
       resurrection_count, last_resurrected_at, limit_key
FROM soniq_dead_letter_jobs
WHERE
-- include: _dead_letter_filter
  AND (%(before_at)s IS NULL
       OR (dead_lettered_at, id) < (%(before_at)s, %(before_id)s))
ORDER BY dead_lettered_at DESC, id DESC
LIMIT COALESCE(%(limit)s, -1)

-- name: dead_letter_get
SELECT id, job_name, args, queue, priority, attempts, max_attempts, reason,
       last_error, traceback, original_created_at, started_at, dead_lettered_at,
       resurrection_count, last_resurrected_at, limit_key
FROM soniq_dead_letter_jobs WHERE id = %(id)s

-- name: dead_letter_replay
-- A fresh queued row from the dead letter; the dead letter stays, counting replays.
-- Nothing is inserted (and no row returned) when the id is not a dead letter.
UPDATE soniq_dead_letter_jobs
SET resurrection_count = resurrection_count + 1, last_resurrected_at = %(now)s
WHERE id = %(id)s;
INSERT INTO soniq_jobs
    (id, job_name, args, queue, priority, max_attempts, scheduled_at, created_at, updated_at,
     limit_key)
SELECT %(new_id)s, job_name, args, queue, priority, max_attempts, %(now)s, %(now)s, %(now)s,
       limit_key
FROM soniq_dead_letter_jobs WHERE id = %(id)s
RETURNING id AS id, '' AS pg_notify

-- name: dead_letter_replay_batch
-- replay for one page of matching dead letters, all or nothing: the page is picked and
-- paired in order with the new ids the caller minted (n counts from 1), counted as
-- resurrected and copied into soniq_jobs. woke is the number of distinct queues, what
-- PostgreSQL's count of its NOTIFYs gives.
DELETE FROM temp.soniq_scratch;
INSERT INTO temp.soniq_scratch (tag, n, id, ref, at)
SELECT 'pick', p.n, p.id, ids.value, p.dead_lettered_at
FROM (
    SELECT id, dead_lettered_at,
           row_number() OVER (ORDER BY dead_lettered_at DESC, id DESC) AS n
    FROM (
        SELECT id, dead_lettered_at FROM soniq_dead_letter_jobs
        WHERE
        -- include: _dead_letter_filter
          AND (%(before_at)s IS NULL
               OR (dead_lettered_at, id) < (%(before_at)s, %(before_id)s))
        ORDER BY dead_lettered_at DESC, id DESC
        LIMIT COALESCE(%(limit)s, -1)
    )
) AS p
JOIN json_each(%(new_ids)s) AS ids ON ids.key + 1 = p.n;
UPDATE soniq_dead_letter_jobs
SET resurrection_count = resurrection_count + 1, last_resurrected_at = %(now)s
WHERE id IN (SELECT id FROM temp.soniq_scratch WHERE tag = 'pick');
INSERT INTO soniq_jobs
    (id, job_name, args, queue, priority, max_attempts, scheduled_at, created_at, updated_at,
     limit_key)
SELECT s.ref, d.job_name, d.args, d.queue, d.priority, d.max_attempts,
       %(now)s, %(now)s, %(now)s, d.limit_key
FROM temp.soniq_scratch AS s JOIN soniq_dead_letter_jobs AS d ON d.id = s.id
WHERE s.tag = 'pick'
ORDER BY s.n;
SELECT s.ref AS id, s.id AS dead_letter_id, s.at AS dead_lettered_at,
       (SELECT count(DISTINCT d.queue)
        FROM temp.soniq_scratch AS x JOIN soniq_dead_letter_jobs AS d ON d.id = x.id
        WHERE x.tag = 'pick') AS woke
FROM temp.soniq_scratch AS s
WHERE s.tag = 'pick'
ORDER BY s.n

-- name: dead_letter_purge
DELETE FROM soniq_dead_letter_jobs
WHERE
-- include: _dead_letter_filter
;
SELECT changes() AS count

-- name: dead_letter_import
-- One batch of checked export lines, as a JSON array of objects (times ISO 8601 text,
-- read by the store's soniq_epoch). Ids already present or repeated are skipped; the
-- count of rows written is returned.
INSERT INTO soniq_dead_letter_jobs
    (id, job_name, args, queue, priority, attempts, max_attempts, reason, last_error,
     traceback, original_created_at, started_at, dead_lettered_at, resurrection_count,
     last_resurrected_at, limit_key)
SELECT r.value ->> 'id', r.value ->> 'job_name', r.value -> 'args', r.value ->> 'queue',
       r.value ->> 'priority', r.value ->> 'attempts', r.value ->> 'max_attempts',
       r.value ->> 'reason', r.value ->> 'last_error', r.value ->> 'traceback',
       soniq_epoch(r.value ->> 'original_created_at'),
       soniq_epoch(r.value ->> 'started_at'),
       soniq_epoch(r.value ->> 'dead_lettered_at'),
       r.value ->> 'resurrection_count', soniq_epoch(r.value ->> 'last_resurrected_at'),
       r.value ->> 'limit_key'
FROM json_each(%(rows)s) AS r
WHERE true
ON CONFLICT (id) DO NOTHING;
SELECT changes() AS count

-- ---------------------------------------------------------------------------------
-- Scheduler
-- ---------------------------------------------------------------------------------

-- name: schedule_upsert
-- Re-adding a name updates the row in place: its status stays, and so does its next
-- run unless the timing itself changed ("IS" is SQLite's IS NOT DISTINCT FROM; SET
-- reads the old row throughout).
INSERT INTO soniq_recurring_jobs AS r
    (name, cron, interval_seconds, timezone, args, queue, priority, catch_up, next_run_at,
     created_at, updated_at)
VALUES (
    %(name)s, %(cron)s, %(interval_seconds)s, %(timezone)s, %(args)s, %(queue)s,
    %(priority)s, %(catch_up)s, %(next_run_at)s, %(now)s, %(now)s
)
ON CONFLICT (name) DO UPDATE SET
    next_run_at = CASE
        WHEN r.cron IS excluded.cron
         AND r.interval_seconds IS excluded.interval_seconds
         AND r.timezone = excluded.timezone
         AND r.next_run_at IS NOT NULL
        THEN r.next_run_at
        ELSE excluded.next_run_at
    END,
    cron = excluded.cron,
    interval_seconds = excluded.interval_seconds,
    timezone = excluded.timezone,
    args = excluded.args,
    queue = excluded.queue,
    priority = excluded.priority,
    catch_up = excluded.catch_up,
    updated_at = %(now)s
RETURNING name, cron, interval_seconds, timezone, args, queue, priority, status, catch_up,
       next_run_at, last_run_at, created_at, updated_at

-- name: schedule_get
SELECT name, cron, interval_seconds, timezone, args, queue, priority, status, catch_up,
       next_run_at, last_run_at, created_at, updated_at
FROM soniq_recurring_jobs WHERE name = %(name)s

-- name: schedule_list
SELECT name, cron, interval_seconds, timezone, args, queue, priority, status, catch_up,
       next_run_at, last_run_at, created_at, updated_at
FROM soniq_recurring_jobs
WHERE (%(status)s IS NULL OR status = %(status)s)
ORDER BY name

-- name: schedule_pause
UPDATE soniq_recurring_jobs SET status = 'paused', updated_at = %(now)s
WHERE name = %(name)s
RETURNING name

-- name: schedule_resume
-- The next run is counted from now: runs that fell due while paused are not made up.
-- An active schedule keeps its next run.
UPDATE soniq_recurring_jobs
SET next_run_at = CASE WHEN status = 'paused' OR next_run_at IS NULL
                       THEN %(next_run_at)s ELSE next_run_at END,
    status = 'active', updated_at = %(now)s
WHERE name = %(name)s
RETURNING name

-- name: schedule_remove
DELETE FROM soniq_recurring_jobs WHERE name = %(name)s RETURNING name

-- name: scheduler_now
-- The store's clock, as PostgreSQL's now() is the server's.
SELECT %(now)s AS now

-- name: scheduler_due
SELECT name, cron, interval_seconds, timezone, args, queue, priority, catch_up,
       next_run_at, %(now)s AS now
FROM soniq_recurring_jobs
WHERE status = 'active' AND next_run_at <= %(now)s
ORDER BY next_run_at, name
LIMIT COALESCE(%(limit)s, -1)

-- name: scheduler_advance
-- Claims one due run: only the first transaction to move next_run_at on from the value
-- it read matches. Times are stored to the microsecond, so "due" read back from
-- scheduler_due compares equal.
UPDATE soniq_recurring_jobs
SET next_run_at = %(next_run_at)s,
    last_run_at = COALESCE(%(fired_at)s, last_run_at),
    updated_at = %(now)s
WHERE name = %(name)s AND status = 'active' AND next_run_at = %(due)s
RETURNING name

-- name: scheduler_seconds_to_next
SELECT min(next_run_at) - %(now)s AS seconds
FROM soniq_recurring_jobs WHERE status = 'active'

-- -------------------------------------------------------------------------- testing

-- name: testing_enqueued_jobs
SELECT id, job_name, args, queue, priority, status, attempts, max_attempts,
       dedup_key, scheduled_at, created_at, updated_at, started_at, finished_at,
       worker_id, result, last_error, cancel_requested_at
FROM soniq_jobs
WHERE status = 'queued'
  AND (%(job_name)s IS NULL OR job_name = %(job_name)s)
  AND (%(queue)s IS NULL OR queue = %(queue)s)
ORDER BY created_at, id

-- name: testing_make_due
UPDATE soniq_jobs SET scheduled_at = min(scheduled_at, %(now)s), delayed = 0,
    updated_at = %(now)s
WHERE status = 'queued' AND (scheduled_at > %(now)s OR delayed = 1)
  AND (%(queues)s IS NULL OR queue IN (SELECT value FROM json_each(%(queues)s)));
SELECT changes() AS moved

-- name: testing_runnable
SELECT job_name, count(*) AS jobs
FROM soniq_jobs
WHERE status = 'queued' AND scheduled_at <= %(now)s
  AND (%(queues)s IS NULL OR queue IN (SELECT value FROM json_each(%(queues)s)))
GROUP BY job_name
ORDER BY job_name

-- ---------------------------------------------------------------------------------
-- The store's own statements (no PostgreSQL twin: their names start with store_)
-- ---------------------------------------------------------------------------------

-- name: store_scratch
-- Rows one statement of a named query hands to the next (SQLite has no RETURNING in a
-- subquery). TEMP: private to the store's connection, and part of its transactions.
CREATE TEMP TABLE IF NOT EXISTS soniq_scratch (
    tag TEXT NOT NULL, id TEXT, ref TEXT, n INTEGER, m INTEGER, at REAL
)

-- name: store_copy_job
-- One row of enqueue_many's bulk insert (SqliteSession.copy_jobs, run by executemany).
INSERT INTO soniq_jobs
    (id, args, job_name, queue, priority, max_attempts, producer_id, scheduled_at, created_at,
     updated_at, delayed)
VALUES (%(id)s, %(args)s, %(job_name)s, %(queue)s, %(priority)s, %(max_attempts)s,
        %(producer_id)s, %(scheduled_at)s, %(now)s, %(now)s, %(scheduled_at)s > %(now)s)

-- name: store_migrations_table
CREATE TABLE IF NOT EXISTS soniq_migrations (
    version    TEXT PRIMARY KEY,
    applied_at REAL NOT NULL
) STRICT

-- name: store_has_migrations
SELECT count(*) AS found FROM sqlite_schema WHERE type = 'table' AND name = 'soniq_migrations'

-- name: store_migrations_applied
SELECT version, applied_at FROM soniq_migrations ORDER BY version

-- name: store_migration_record
INSERT INTO soniq_migrations (version, applied_at) VALUES (%(version)s, %(now)s)

-- name: register_tasks
DELETE FROM soniq_task_registry
WHERE last_seen_at < %(now)s - 604800 AND worker_id <> %(worker_id)s;
INSERT INTO soniq_task_registry
    (task_name, worker_id, last_seen_at, args_model_repr, queue, worker_queues,
     args_schema, hostname)
SELECT r.value ->> 'task_name', %(worker_id)s, %(now)s, r.value ->> 'args_model_repr',
       r.value ->> 'queue', %(worker_queues)s, r.value ->> 'args_schema', %(hostname)s
FROM json_each(%(rows)s) AS r
WHERE true
ON CONFLICT (task_name, worker_id) DO UPDATE SET
    last_seen_at = excluded.last_seen_at, args_model_repr = excluded.args_model_repr,
    queue = excluded.queue, worker_queues = excluded.worker_queues,
    args_schema = excluded.args_schema, hostname = excluded.hostname

-- name: served_tasks
SELECT task_name AS task_name, worker_id AS worker_id, hostname AS hostname,
       queue AS queue, worker_queues AS worker_queues, args_schema AS args_schema,
       args_model_repr AS args_model_repr, last_seen_at AS last_seen_at
FROM soniq_task_registry
WHERE last_seen_at >= %(now)s - %(max_age)s
ORDER BY task_name, last_seen_at DESC, worker_id
