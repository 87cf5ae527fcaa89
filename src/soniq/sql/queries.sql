-- Named queries, loaded once by soniq.sql.QUERIES.
-- Each starts with a "-- name: <name>" line. Parameters are %(name)s; the connection
-- adapter rewrites them for drivers with another placeholder style.
-- User-chosen identifiers (queue, task names) are always bound parameters.

-- name: insert_job
-- One round trip: insert, skip when a queued job holds the same dedup key, and wake
-- workers. Postgres delivers the NOTIFY at commit, and folds repeats within a
-- transaction into one.
WITH ins AS (
    INSERT INTO soniq_jobs
        (id, job_name, args, queue, priority, max_attempts, dedup_key, scheduled_at)
    VALUES (
        %(id)s::uuid, %(job_name)s, %(args)s::jsonb, %(queue)s, %(priority)s::int,
        %(max_attempts)s::int, %(dedup_key)s::text,
        COALESCE(%(scheduled_at)s::timestamptz, now())
    )
    ON CONFLICT (job_name, dedup_key) WHERE status = 'queued' AND dedup_key IS NOT NULL
    DO NOTHING
    RETURNING id, queue
)
SELECT id::text, pg_notify('soniq_new_job', queue) FROM ins

-- name: find_queued_duplicate
SELECT id::text FROM soniq_jobs
WHERE job_name = %(job_name)s AND dedup_key = %(dedup_key)s AND status = 'queued'
LIMIT 1

-- name: copy_jobs
-- enqueue_many without a run time: scheduled_at keeps its default, the server's now().
COPY soniq_jobs (id, job_name, args, queue, priority, max_attempts) FROM STDIN

-- name: copy_jobs_scheduled
COPY soniq_jobs (id, job_name, args, queue, priority, max_attempts, scheduled_at) FROM STDIN

-- name: notify_queues
SELECT pg_notify('soniq_new_job', q) FROM unnest(%(queues)s::text[]) AS q

-- name: get_job
SELECT id::text, job_name, args, queue, priority, status, attempts, max_attempts,
       dedup_key, scheduled_at, created_at, updated_at, started_at, finished_at,
       worker_id::text, result, last_error
FROM soniq_jobs WHERE id = %(id)s::uuid

-- name: get_dead_letter_job
SELECT id::text, job_name, args, queue, priority, 'dead_letter' AS status, attempts,
       max_attempts, NULL::text AS dedup_key, NULL::timestamptz AS scheduled_at,
       original_created_at AS created_at, dead_lettered_at AS updated_at,
       NULL::timestamptz AS started_at, dead_lettered_at AS finished_at,
       NULL::text AS worker_id, NULL::jsonb AS result, last_error, reason,
       resurrection_count
FROM soniq_dead_letter_jobs WHERE id = %(id)s::uuid

-- name: list_jobs
SELECT id::text, job_name, args, queue, priority, status, attempts, max_attempts,
       dedup_key, scheduled_at, created_at, updated_at, started_at, finished_at,
       worker_id::text, result, last_error
FROM soniq_jobs
WHERE (%(status)s::text IS NULL OR status = %(status)s::text)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(job_name)s::text IS NULL OR job_name = %(job_name)s::text)
ORDER BY created_at DESC, id
LIMIT %(limit)s::int OFFSET %(offset)s::int

-- name: cancel_job
UPDATE soniq_jobs
SET status = 'cancelled', finished_at = now(), updated_at = now()
WHERE id = %(id)s::uuid AND status = 'queued'
RETURNING id

-- name: get_result
SELECT status, result FROM soniq_jobs WHERE id = %(id)s::uuid

-- name: delete_job
DELETE FROM soniq_jobs WHERE id = %(id)s::uuid RETURNING id

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

-- name: schema_version
SELECT to_regclass('soniq_migrations') IS NOT NULL AS has_migrations,
       to_regclass('soniq_jobs') IS NOT NULL AS has_jobs
