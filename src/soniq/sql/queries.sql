-- Named queries, loaded once by soniq.sql.QUERIES.
-- Each starts with a "-- name: <name>" line. Parameters are %(name)s; the connection
-- adapter rewrites them for drivers with another placeholder style.
-- User-chosen identifiers (queue, task names) are always bound parameters.
-- Job args arrive as JSON text and are cast with ::text::jsonb: typed as text, they
-- bypass any jsonb codec the caller's connection has (asyncpg apps often install one
-- that would encode the string again, storing a JSON string instead of an object).

-- name: insert_job
-- One round trip: insert, skip when a queued job holds the same dedup key, and wake
-- workers. Postgres delivers the NOTIFY at commit, and folds repeats within a
-- transaction into one. A job not due yet is written "delayed" (see migration 0005).
WITH ins AS (
    INSERT INTO soniq_jobs
        (id, job_name, args, queue, priority, max_attempts, dedup_key, scheduled_at, headers,
         delayed, producer_id, limit_key, watched)
    VALUES (
        %(id)s::uuid, %(job_name)s, %(args)s::text::jsonb, %(queue)s, %(priority)s::int,
        %(max_attempts)s::int, %(dedup_key)s::text,
        COALESCE(%(scheduled_at)s::timestamptz, now()), %(headers)s::text::jsonb,
        COALESCE(%(scheduled_at)s::timestamptz > now(), false), %(producer_id)s::text,
        %(limit_key)s::text, COALESCE(%(watched)s::boolean, false)
    )
    ON CONFLICT (job_name, dedup_key) WHERE status = 'queued' AND dedup_key IS NOT NULL
    DO NOTHING
    RETURNING id, queue, delayed, scheduled_at
)
SELECT id::text,
       pg_notify(CASE WHEN delayed THEN 'soniq_delayed' ELSE 'soniq_new_job' END,
                 CASE WHEN delayed THEN EXTRACT(EPOCH FROM scheduled_at - now())::text
                      ELSE queue END)
FROM ins

-- name: insert_job_plain
-- insert_job for rows without a dedup key: nothing to skip, nothing to return. The
-- NOTIFY rides in the FROM clause (pg_notify returns one empty row) instead of a CTE
-- with RETURNING, which costs the server about 10 us less per row. A delayed job wakes
-- no worker: it tells them on soniq_delayed in how many seconds it falls due, so that
-- they promote it then (soniq.worker.promotion). watched: enqueue(watch=True).
INSERT INTO soniq_jobs
    (id, job_name, args, queue, priority, max_attempts, scheduled_at, headers, delayed,
     producer_id, limit_key, watched)
SELECT %(id)s::uuid, %(job_name)s, %(args)s::text::jsonb, %(queue)s, %(priority)s::int,
       %(max_attempts)s::int, COALESCE(%(scheduled_at)s::timestamptz, now()),
       %(headers)s::text::jsonb, COALESCE(%(scheduled_at)s::timestamptz > now(), false),
       %(producer_id)s::text, %(limit_key)s::text, COALESCE(%(watched)s::boolean, false)
FROM pg_notify(
    CASE WHEN %(scheduled_at)s::timestamptz > now() THEN 'soniq_delayed' ELSE 'soniq_new_job' END,
    CASE WHEN %(scheduled_at)s::timestamptz > now()
         THEN EXTRACT(EPOCH FROM %(scheduled_at)s::timestamptz - now())::text
         ELSE %(queue)s END
)

-- name: insert_jobs
-- enqueue_many with dedup keys, trace headers, limit keys or watch=True (which COPY
-- does not write): one statement, so every row is written or none is. Rows whose key is already queued (or
-- repeats earlier in the batch) are skipped; the caller looks their ids up with
-- find_queued_duplicates. Every row of a batch shares its headers.
WITH batch AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(args)s::text[]::jsonb[], %(dedup_keys)s::text[],
                         %(limit_keys)s::text[])
        WITH ORDINALITY AS b(id, args, dedup_key, limit_key, n)
), ins AS (
    INSERT INTO soniq_jobs
        (id, job_name, args, queue, priority, max_attempts, dedup_key, scheduled_at, headers,
         delayed, producer_id, limit_key, watched)
    SELECT id, %(job_name)s, args, %(queue)s, %(priority)s::int, %(max_attempts)s::int,
           dedup_key, COALESCE(%(scheduled_at)s::timestamptz, now()), %(headers)s::text::jsonb,
           COALESCE(%(scheduled_at)s::timestamptz > now(), false), %(producer_id)s::text,
           limit_key, COALESCE(%(watched)s::boolean, false)
    FROM batch ORDER BY n
    ON CONFLICT (job_name, dedup_key) WHERE status = 'queued' AND dedup_key IS NOT NULL
    DO NOTHING
    RETURNING id
)
SELECT id::text FROM ins

-- name: find_queued_duplicates
SELECT dedup_key, id::text FROM soniq_jobs
WHERE job_name = %(job_name)s AND status = 'queued' AND dedup_key = ANY(%(dedup_keys)s::text[])

-- name: find_queued_duplicate
SELECT id::text FROM soniq_jobs
WHERE job_name = %(job_name)s AND dedup_key = %(dedup_key)s AND status = 'queued'
LIMIT 1

-- name: copy_jobs
-- enqueue_many without a run time: scheduled_at keeps its default, the server's now().
COPY soniq_jobs (id, args, job_name, queue, priority, max_attempts, producer_id) FROM STDIN

-- name: copy_jobs_scheduled
-- COPY computes nothing, so the caller says whether the time is still to come
-- ("delayed", by its own clock). A job its clock calls due a moment early is held back by
-- the claim's scheduled_at check; one it calls delayed a moment late is promoted.
COPY soniq_jobs
    (id, args, job_name, queue, priority, max_attempts, producer_id, scheduled_at, delayed)
FROM STDIN

-- name: notify_queues
SELECT pg_notify('soniq_new_job', q) FROM unnest(%(queues)s::text[]) AS q

-- name: notify_delayed
-- enqueue_many of jobs for later: in how many seconds they fall due (see insert_job_plain).
SELECT pg_notify('soniq_delayed', EXTRACT(EPOCH FROM %(scheduled_at)s::timestamptz - now())::text)
WHERE %(scheduled_at)s::timestamptz > now()

-- name: notify_job_events
-- Events of watched jobs (migration 0012), for the processes waiting on them: one
-- payload of comma-separated "<kind>:<id>" items (s: started, p: progress, r: retrying,
-- d: done, c: cancelled, x: dead-lettered), which the caller keeps under NOTIFY's
-- 8,000-byte limit. Only watched jobs send events, so a workload nobody waits on never
-- takes NOTIFY's commit-time lock.
SELECT pg_notify('soniq_job_events', %(payload)s)

-- name: watch_jobs
-- A wait for jobs (soniq.waiting), run after its process LISTENs on soniq_job_events:
-- mark the live ones watched, so that their every later event is sent, and read their
-- state in the same round trip (BullMQ's race: a check made before subscribing misses
-- a job that finishes in between). A row marked here is returned as the UPDATE left
-- it, its latest version. The others come from the statement's snapshot: watched
-- already (so later events are sent) or finished (which stays so), and dead letters.
-- Rows locked now (a claim, an acknowledgement, a handler's transaction) are skipped,
-- never waited for: waiting could deadlock with a batch that locks rows in another
-- order, and would hold every wait up behind a long transaction. An id with no row
-- here was skipped, changed under the statement, or is gone; job_states reads those
-- again on a fresh snapshot, and the caller marks a live one left unwatched on its
-- next try. expired: a done job whose result is older than SONIQ_RESULT_TTL (see
-- get_result).
-- Marking a queued row locks it for a moment, and a claim running meanwhile skips it
-- (SKIP LOCKED) and may find nothing else to do: the queues of the queued rows marked
-- are woken as an enqueue wakes them. enqueue(watch=True) needs none of this: its
-- rows are watched already, so they are read, never locked, here.
WITH marked AS (
    UPDATE soniq_jobs SET watched = true
    WHERE id = ANY(ARRAY(
        SELECT id FROM soniq_jobs
        WHERE id = ANY(%(ids)s::uuid[]) AND status IN ('queued', 'processing') AND NOT watched
        FOR UPDATE SKIP LOCKED
    ))
    RETURNING id, status, result, last_error, attempts, progress, finished_at, queue, delayed
)
SELECT id::text, status, result, last_error, attempts, progress, finished_at,
       false AS expired, true AS watched
FROM marked
WHERE (SELECT count(pg_notify('soniq_new_job', q.queue))
       FROM (SELECT DISTINCT queue FROM marked WHERE status = 'queued' AND NOT delayed) AS q
      ) >= 0
UNION ALL
SELECT j.id::text, j.status, j.result, j.last_error, j.attempts, j.progress, j.finished_at,
       j.status = 'done' AND j.finished_at IS NOT NULL
       AND j.finished_at <= now() - make_interval(secs => %(ttl)s::float8),
       j.watched
FROM soniq_jobs AS j
WHERE j.id = ANY(%(ids)s::uuid[]) AND (j.watched OR j.status NOT IN ('queued', 'processing'))
  AND j.id NOT IN (SELECT id FROM marked)
UNION ALL
SELECT d.id::text, 'dead_letter', NULL, COALESCE(d.last_error, d.reason), d.attempts,
       d.progress, d.dead_lettered_at, false, d.watched
FROM soniq_dead_letter_jobs AS d
WHERE d.id = ANY(%(ids)s::uuid[])

-- name: job_states
-- What waiters re-read after an event or at their safety poll: each job's state, from
-- soniq_jobs or the dead-letter table (a job is in one or the other in any snapshot).
SELECT id::text, status, result, last_error, attempts, progress, finished_at,
       status = 'done' AND finished_at IS NOT NULL
       AND finished_at <= now() - make_interval(secs => %(ttl)s::float8) AS expired,
       watched
FROM soniq_jobs
WHERE id = ANY(%(ids)s::uuid[])
UNION ALL
SELECT id::text, 'dead_letter', NULL, COALESCE(last_error, reason), attempts, progress,
       dead_lettered_at, false, watched
FROM soniq_dead_letter_jobs
WHERE id = ANY(%(ids)s::uuid[])

-- name: get_job
SELECT id::text, job_name, args, queue, priority, status, attempts, max_attempts,
       dedup_key, scheduled_at, created_at, updated_at, started_at, finished_at,
       worker_id::text, result, last_error, cancel_requested_at, producer_id, progress
FROM soniq_jobs WHERE id = %(id)s::uuid

-- name: job_created_at
-- The stored enqueue time of a job just written, read on the connection that wrote it
-- (the Django tasks backend returns it with the task result).
SELECT created_at FROM soniq_jobs WHERE id = %(id)s::uuid

-- name: get_dead_letter_job
SELECT id::text, job_name, args, queue, priority, 'dead_letter' AS status, attempts,
       max_attempts, NULL::text AS dedup_key, NULL::timestamptz AS scheduled_at,
       original_created_at AS created_at, dead_lettered_at AS updated_at,
       started_at, dead_lettered_at AS finished_at,
       NULL::text AS worker_id, NULL::jsonb AS result, last_error,
       NULL::timestamptz AS cancel_requested_at, NULL::text AS producer_id, progress,
       reason, resurrection_count
FROM soniq_dead_letter_jobs WHERE id = %(id)s::uuid

-- name: list_jobs
-- Newest first by id: job ids are UUIDv7, so their order is creation order, and the
-- primary key serves a page without sorting the table. before (an id: the last one of
-- the previous page) pages by keyset; as a bound, never "IS NULL OR", so that it stays
-- an index condition in a generic plan too. since is inclusive, until exclusive, both
-- on created_at. (ORDER BY names the table's column: a bare "id" would be the output's
-- id::text, a sort of the whole table.)
SELECT id::text, job_name, args, queue, priority, status, attempts, max_attempts,
       dedup_key, scheduled_at, created_at, updated_at, started_at, finished_at,
       worker_id::text, result, last_error, cancel_requested_at, producer_id, progress
FROM soniq_jobs
WHERE id < COALESCE(%(before)s::uuid, 'ffffffff-ffff-ffff-ffff-ffffffffffff'::uuid)
  AND (%(status)s::text IS NULL OR status = %(status)s::text)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(job_name)s::text IS NULL OR job_name = %(job_name)s::text)
  AND (%(since)s::timestamptz IS NULL OR created_at >= %(since)s::timestamptz)
  AND (%(until)s::timestamptz IS NULL OR created_at < %(until)s::timestamptz)
ORDER BY soniq_jobs.id DESC
LIMIT %(limit)s::int OFFSET %(offset)s::int

-- name: set_lock_timeout
-- For the rest of the transaction: a lock wait longer than this fails (55P03).
SELECT set_config('lock_timeout', %(ms)s::int::text || 'ms', true)

-- name: cancel_job
-- A queued job is cancelled at once (and counted in soniq_stats). A running one gets a
-- cancel request: the stamp (the first one is kept), and a NOTIFY on soniq_cancel that
-- wakes the worker holding it; that worker asks the handler to stop and writes the
-- outcome. (The SET clause reads the old status, RETURNING the new one.)
WITH changed AS (
    UPDATE soniq_jobs
    SET status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END,
        finished_at = CASE WHEN status = 'queued' THEN now() ELSE finished_at END,
        cancel_requested_at = CASE WHEN status = 'processing'
                                   THEN COALESCE(cancel_requested_at, now())
                                   ELSE cancel_requested_at END,
        updated_at = now()
    WHERE id = %(id)s::uuid AND status IN ('queued', 'processing')
    RETURNING id, status, queue, job_name, watched
), counted AS (
    INSERT INTO soniq_stats AS s (minute, queue, job_name, cancelled)
    SELECT date_trunc('minute', now()), queue, job_name, 1 FROM changed
    WHERE status = 'cancelled'
    ON CONFLICT (minute, queue, job_name) DO UPDATE SET cancelled = s.cancelled + 1
)
SELECT id::text, status,
       CASE WHEN status = 'processing' THEN pg_notify('soniq_cancel', id::text) END AS woke,
       watched
FROM changed

-- name: retry_job_now
-- app.retry_job on a row of soniq_jobs: a cancelled job goes back to the queue, due
-- now, with the attempts it had left and at least one more. Its attempt count never
-- goes down: it is the fence of every write, and a worker may still be running an
-- older attempt of a cancelled job (a cancel request, then stale-worker recovery).
-- A queued job that already failed (waiting out its retry
-- delay) becomes due now. The row's state before is returned either way, with
-- "requeued" telling whether it changed, so the caller can say why it did not.
WITH target AS (
    SELECT id, status, attempts, scheduled_at FROM soniq_jobs
    WHERE id = %(id)s::uuid
    FOR UPDATE
), requeued AS (
    UPDATE soniq_jobs AS j
    SET status = 'queued', delayed = false,
        max_attempts = CASE WHEN t.status = 'cancelled'
                            THEN GREATEST(j.max_attempts, j.attempts + 1)
                            ELSE j.max_attempts END,
        scheduled_at = CASE WHEN t.status = 'cancelled' THEN now()
                            ELSE LEAST(j.scheduled_at, now()) END,
        started_at = CASE WHEN t.status = 'cancelled' THEN NULL ELSE j.started_at END,
        finished_at = NULL, cancel_requested_at = NULL, worker_id = NULL, updated_at = now()
    FROM target AS t
    WHERE j.id = t.id AND (t.status = 'cancelled' OR (t.status = 'queued' AND t.attempts > 0))
    RETURNING j.queue
)
SELECT t.status, t.attempts, t.scheduled_at,
       (SELECT count(pg_notify('soniq_new_job', queue)) FROM requeued)::int AS requeued
FROM target AS t

-- name: get_result
-- A result is readable for SONIQ_RESULT_TTL seconds after the job finished; after that
-- it is as if there were none, whether or not the sweep has deleted the row yet.
SELECT result FROM soniq_jobs
WHERE id = %(id)s::uuid AND status = 'done'
  AND (finished_at IS NULL OR finished_at > now() - make_interval(secs => %(ttl)s::float8))

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

-- name: queue_totals
-- get_queue_stats(): the whole queue's counts by status, and the dead letters.
SELECT count(*) FILTER (WHERE status = 'queued')     AS queued,
       count(*) FILTER (WHERE status = 'processing') AS processing,
       count(*) FILTER (WHERE status = 'done')       AS done,
       count(*) FILTER (WHERE status = 'cancelled')  AS cancelled,
       (SELECT count(*) FROM soniq_dead_letter_jobs) AS dead_letter
FROM soniq_jobs

-- name: schema_version
SELECT to_regclass('soniq_migrations') IS NOT NULL AS has_migrations,
       to_regclass('soniq_jobs') IS NOT NULL AS has_jobs

-- ---------------------------------------------------------------------------------
-- Worker
-- ---------------------------------------------------------------------------------

-- name: _queue_open
-- A fragment, not a query: "the row's queue is not paused now, and has no limits of
-- its own", for the claims (a column named queue must be in scope). A queue with
-- limits (app.queues.set_limits, migration 0011) is gated: its jobs are claimed by
-- claim_gated alone, which counts them. Paused and gated queues (soniq_queues) are
-- read by the claim itself: both lookups are uncorrelated, so they run once per
-- statement (an initplan and a one-time filter over a table of a few rows), not once
-- per candidate row. The COALESCE never changes the value (queue and name are NOT
-- NULL); it hides the "<> ALL" from the planner, which otherwise multiplies one "<>"
-- per element it guesses the array holds (a hundred or more) into a selectivity near
-- zero, and then prefers reading the whole table and sorting it to walking the claim
-- index (checked in test_big_table_plans).
COALESCE(queue <> ALL(ARRAY(SELECT name FROM soniq_queues
                            WHERE (paused_at IS NOT NULL
                                   AND (paused_until IS NULL OR paused_until > now()))
                               OR concurrency IS NOT NULL OR rate_limit IS NOT NULL)),
         true)
AND NOT EXISTS (SELECT FROM soniq_queues
                WHERE name = '*' AND paused_at IS NOT NULL
                  AND (paused_until IS NULL OR paused_until > now()))

-- name: claim_jobs
-- Claim up to %(limit)s runnable jobs in priority order. SKIP LOCKED lets many
-- workers claim side by side without waiting on each other. A claim counts as an
-- attempt at once, and the new attempt number fences every later write.
-- "id = ANY(ARRAY(...))" makes the update find the picked rows by primary key; a join
-- on the subquery lets the planner scan the whole table for 64 rows.
-- Jobs not due yet are "delayed" and outside soniq_jobs_claim_idx (promote_due_jobs
-- brings them in), so the scan meets only due rows, however many wait for later. The
-- scheduled_at check still holds back a row written not delayed though not due (by an
-- older Soniq, or a producer whose clock runs ahead). The worker's pool runs this with
-- bitmap scans off (see PostgresBackend): the plan is the walk of the index in order.
-- Paused queues are read by the claim itself (see _queue_open).
-- Limited jobs (limit_key set, migration 0010) are outside the index and go through
-- claim_limited instead.
UPDATE soniq_jobs AS j
SET status = 'processing', attempts = j.attempts + 1, worker_id = %(worker_id)s::uuid,
    started_at = now(), updated_at = now()
WHERE j.id = ANY(ARRAY(
    SELECT id FROM soniq_jobs
    WHERE status = 'queued' AND NOT delayed AND limit_key IS NULL
      AND scheduled_at <= now()
      AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
      AND
      -- include: _queue_open
    ORDER BY priority, scheduled_at, id
    LIMIT %(limit)s::int
    FOR UPDATE SKIP LOCKED
))
RETURNING j.id::text AS id, j.job_name, j.args, j.queue, j.priority, j.attempts AS attempt,
          j.max_attempts, j.scheduled_at, j.created_at, j.headers, NULL::text AS limit_key

-- name: claim_jobs_by_queue
-- claim_jobs for a worker that serves only some queues (--queues, or every queue but
-- the paused ones), on soniq_jobs_queue_claim_idx, the optional index by queue
-- (app.queues.add_index, soniq setup --queue-index). claim_jobs walks the global
-- index in priority order and skips the rows of queues it does not serve, one heap
-- visit each: behind 100,000 jobs of a paused queue (or of one this worker is not
-- started for) a claim read them all, 50 ms instead of 3. Here each served queue's
-- due jobs come off its own part of the index. %(queues)s NULL means every queue with
-- due jobs, found by a skip scan (one probe per distinct queue). Each queue offers its
-- best candidates, at most %(limit)s with up to 4 queues, else 2 * %(limit)s spread
-- over them, and the best %(limit)s of those in priority order are claimed: with more
-- than 4 queues, priority order across queues is that of the candidates (a queue with
-- many top-priority jobs gives its share per claim, not all of them). Candidates not
-- claimed stay locked until the statement ends, a few milliseconds.
WITH RECURSIVE walk(queue) AS (
    (SELECT queue FROM soniq_jobs
     WHERE status = 'queued' AND NOT delayed AND limit_key IS NULL
     ORDER BY queue LIMIT 1)
  UNION ALL
    SELECT (SELECT j.queue FROM soniq_jobs AS j
            WHERE j.status = 'queued' AND NOT j.delayed AND j.limit_key IS NULL
              AND j.queue > w.queue
            ORDER BY j.queue LIMIT 1)
    FROM walk AS w WHERE w.queue IS NOT NULL
), served(queue) AS (
    SELECT q FROM unnest(%(queues)s::text[]) AS q
    UNION ALL
    SELECT w.queue FROM walk AS w WHERE %(queues)s::text[] IS NULL AND w.queue IS NOT NULL
), open AS (
    SELECT queue FROM served
    WHERE
    -- include: _queue_open
)
UPDATE soniq_jobs AS j
SET status = 'processing', attempts = j.attempts + 1, worker_id = %(worker_id)s::uuid,
    started_at = now(), updated_at = now()
WHERE j.id = ANY(ARRAY(
    SELECT c.id FROM open AS q
    CROSS JOIN LATERAL (
        SELECT id, priority, scheduled_at FROM soniq_jobs
        WHERE status = 'queued' AND NOT delayed AND limit_key IS NULL
          AND queue = q.queue AND scheduled_at <= now()
        ORDER BY priority, scheduled_at, id
        LIMIT (SELECT CASE WHEN count(*) <= 4 THEN %(limit)s::int
                           ELSE ceil(2.0 * %(limit)s::int / count(*))::int END
               FROM open)
        FOR UPDATE SKIP LOCKED
    ) AS c
    ORDER BY c.priority, c.scheduled_at, c.id
    LIMIT %(limit)s::int
))
RETURNING j.id::text AS id, j.job_name, j.args, j.queue, j.priority, j.attempts AS attempt,
          j.max_attempts, j.scheduled_at, j.created_at, j.headers, NULL::text AS limit_key

-- name: complete_jobs
-- One statement acknowledges a whole batch. Only the attempt that was claimed can
-- complete: a row requeued (and maybe re-claimed) since then no longer matches.
-- The plan must stay linear in the batch whatever the (always stale) statistics of a
-- queue table say. "j.status = 'processing'" on its own lets the planner believe
-- that almost no row is in flight, start from the table and rescan the unnest for
-- every row: quadratic, and a 1,000-row batch took seconds. The "OR d.attempt IS
-- NULL" (never true: the attempt is a fence) makes it a join filter instead, so the
-- batch drives one primary-key probe per element (or, for a large batch, a hash join).
-- "j.id = ANY(ids)" is for the generic plan (the statement is prepared), which guesses
-- 100 elements: on a small table it would rather read every row and hash them than
-- probe the key 100 times, and a one-row acknowledgement on a 2,000-row table took
-- 1 ms instead of 0.1. With it the rows come from primary-key probes whatever the size.
-- The batch comes as three texts the dialect joins cheaply: array literals of ids and
-- attempts, and a JSON array of results (null: none), element i for job i.
UPDATE soniq_jobs AS j
SET status = 'done', result = NULLIF(d.result, 'null'::jsonb), finished_at = now(),
    updated_at = now(), worker_id = NULL
FROM ROWS FROM (
    unnest(%(ids)s::uuid[]),
    unnest(%(attempts)s::int[]),
    jsonb_array_elements(%(results)s::jsonb)
) AS d(id, attempt, result)
WHERE j.id = ANY(%(ids)s::uuid[]) AND j.id = d.id AND j.attempts = d.attempt
  AND (j.status = 'processing' OR d.attempt IS NULL)
RETURNING j.id, j.watched

-- name: complete_job_in_tx
-- ctx.complete(conn): this attempt is done, in the caller's transaction on the caller's
-- connection, so that the job's "done" commits (or rolls back) with the handler's own
-- writes. Fenced like complete_jobs; the soniq_instance test makes a connection to
-- another database that has a soniq_jobs row of the same id match nothing. The row
-- stays locked until that transaction ends, so stale-worker recovery (SKIP LOCKED)
-- cannot requeue a job whose completion is about to commit. Returns the caller's
-- transaction id, which tells a second call on the same transaction (a no-op) from
-- one on another (SONIQ_COMPLETE_TWICE).
-- The attempt's last progress, if it had one still unwritten, is written with it. A
-- watched job's "d" event is sent in the caller's transaction, so that it is delivered
-- at its commit, and never for a completion that rolls back.
WITH done AS (
    UPDATE soniq_jobs
    SET status = 'done', result = NULLIF(%(result)s::text::jsonb, 'null'::jsonb),
        progress = COALESCE(%(progress)s::text::jsonb, progress),
        finished_at = now(), updated_at = now(), worker_id = NULL
    WHERE id = %(id)s::uuid AND attempts = %(attempt)s::int AND status = 'processing'
      AND EXISTS (SELECT 1 FROM soniq_instance WHERE id = %(instance)s::uuid)
    RETURNING id, watched
)
SELECT txid_current()::text,
       CASE WHEN watched THEN pg_notify('soniq_job_events', 'd:' || id::text) END
FROM done

-- name: instance_matches
-- Whether the connection's database is the one with this soniq_instance id.
SELECT EXISTS (SELECT 1 FROM soniq_instance WHERE id = %(instance)s::uuid)

-- name: instance_id
SELECT id::text FROM soniq_instance

-- name: current_transaction
-- The id of the connection's open transaction, if it has written anything.
SELECT txid_current_if_assigned()::text

-- name: attempt_state
-- See soniq_attempt_state in migration 0012.
SELECT soniq_attempt_state(%(id)s::uuid, %(attempt)s::int, %(wait_ms)s::int)

-- name: complete_job
-- complete_jobs for a batch of one, what an idle or limited worker mostly writes. Its
-- generic plan is its custom plan, so the server plans it once per connection. That of
-- complete_jobs cannot know how long its arrays are, costs more than a plan made for
-- the values at hand, and so loses to a fresh plan at every call: 0.2 ms of planning
-- for each single acknowledgement. A batch spreads that over its rows.
UPDATE soniq_jobs
SET status = 'done', result = %(result)s::jsonb, finished_at = now(), updated_at = now(),
    worker_id = NULL
WHERE id = %(id)s::uuid AND attempts = %(attempt)s AND status = 'processing'
RETURNING id, watched

-- name: write_progress
-- The latest progress of running attempts (ctx.progress), one statement per flush
-- across jobs, element i for job i: an array literal of ids and of attempts, and a
-- JSON array of values. Fenced like an outcome: a zombie attempt (its row requeued
-- or re-claimed since) matches nothing, and neither does a finished job. The plan
-- tricks are complete_jobs' (see there): "OR d.attempt IS NULL" keeps the batch
-- driving, "j.id = ANY(ids)" keeps the generic plan on the primary key. progress is
-- in no index, so the update can be HOT; updated_at is left alone (the row's state
-- has not changed). watched: the caller sends "p" events for those rows only.
UPDATE soniq_jobs AS j
SET progress = d.p
FROM ROWS FROM (
    unnest(%(ids)s::uuid[]),
    unnest(%(attempts)s::int[]),
    jsonb_array_elements(%(values)s::jsonb)
) AS d(id, attempt, p)
WHERE j.id = ANY(%(ids)s::uuid[]) AND j.id = d.id AND j.attempts = d.attempt
  AND (j.status = 'processing' OR d.attempt IS NULL)
RETURNING j.id::text, j.watched

-- name: retry_job
-- A job whose cancellation was requested (see cancel_job) is not run again: it ends
-- cancelled instead of going back to the queue.
UPDATE soniq_jobs
SET status = CASE WHEN cancel_requested_at IS NULL THEN 'queued' ELSE 'cancelled' END,
    finished_at = CASE WHEN cancel_requested_at IS NULL THEN finished_at ELSE now() END,
    worker_id = NULL, last_error = %(error)s, updated_at = now(),
    scheduled_at = now() + make_interval(secs => %(delay)s::float8),
    delayed = %(delay)s::float8 > 0
WHERE id = %(id)s::uuid AND attempts = %(attempt)s::int AND status = 'processing'
RETURNING id, watched, status

-- name: snooze_job
-- Back to the queue without spending the attempt (also used for jobs interrupted by
-- a graceful shutdown), unless its cancellation was requested: then it ends cancelled.
-- A snooze says so in last_error (SNOOZE[: reason]); a shutdown's requeue passes NULL.
UPDATE soniq_jobs
SET status = CASE WHEN cancel_requested_at IS NULL THEN 'queued' ELSE 'cancelled' END,
    finished_at = CASE WHEN cancel_requested_at IS NULL THEN finished_at ELSE now() END,
    attempts = CASE WHEN cancel_requested_at IS NULL THEN attempts - 1 ELSE attempts END,
    worker_id = NULL, updated_at = now(), last_error = COALESCE(%(error)s::text, last_error),
    scheduled_at = now() + make_interval(secs => %(delay)s::float8),
    delayed = %(delay)s::float8 > 0
WHERE id = %(id)s::uuid AND attempts = %(attempt)s::int AND status = 'processing'
RETURNING id, watched, status

-- name: cancel_running_job
-- The handler stopped after a cancel request. Fenced by the attempt like every other
-- outcome: a row requeued (and maybe re-claimed) since then no longer matches.
UPDATE soniq_jobs
SET status = 'cancelled', finished_at = now(), updated_at = now(), worker_id = NULL
WHERE id = %(id)s::uuid AND attempts = %(attempt)s::int AND status = 'processing'
RETURNING id, watched

-- name: cancel_requests
-- Cancel requests for the jobs a worker holds, for when no NOTIFY reached it (polling
-- mode, or a request made while its LISTEN connection was down).
SELECT id::text FROM soniq_jobs
WHERE worker_id = %(worker_id)s::uuid  -- soniq_jobs_worker_idx
  AND status = 'processing' AND cancel_requested_at IS NOT NULL

-- name: dead_letter_job
-- Move, not copy: the row leaves soniq_jobs and enters the dead-letter table in one
-- statement, so it is never in both or in neither. started_at is the last attempt's.
WITH moved AS (
    DELETE FROM soniq_jobs
    WHERE id = %(id)s::uuid AND attempts = %(attempt)s::int AND status = 'processing'
    RETURNING *
)
INSERT INTO soniq_dead_letter_jobs
    (id, job_name, args, queue, priority, attempts, max_attempts, reason, last_error,
     traceback, original_created_at, started_at, limit_key, progress, watched)
SELECT id, job_name, args, queue, priority, attempts, max_attempts, %(reason)s,
       %(error)s, %(traceback)s, created_at, started_at, limit_key, progress, watched
FROM moved
RETURNING id, watched

-- name: register_worker
INSERT INTO soniq_workers (id, hostname, pid, queues, concurrency)
VALUES (%(id)s::uuid, %(hostname)s, %(pid)s::int, %(queues)s::text[], %(concurrency)s::int)
ON CONFLICT (id) DO UPDATE SET last_heartbeat = now()

-- name: heartbeat
-- Also returns the latest control version (see soniq_queues), so that a worker that
-- missed a soniq_control notification (or does not listen) notices a pause or resume
-- within one heartbeat interval, at no extra round trip.
UPDATE soniq_workers SET last_heartbeat = now() WHERE id = %(id)s::uuid
RETURNING id, (SELECT COALESCE(max(control_version), 0) FROM soniq_queues) AS control_version

-- name: worker_control_seen
-- The worker has applied control version %(version)s: it holds no claimed, unstarted
-- job of a queue paused by then (pause(wait=True) waits for this).
UPDATE soniq_workers SET control_seen = GREATEST(control_seen, %(version)s::bigint)
WHERE id = %(id)s::uuid

-- name: deregister_worker
DELETE FROM soniq_workers WHERE id = %(id)s::uuid

-- name: recover_stale_workers
-- Workers silent for longer than the timeout are dead: remove them, requeue their
-- jobs, and dead-letter the jobs whose last allowed attempt died with them (so a job
-- that kills its worker every time cannot loop forever). Jobs whose worker row is
-- already gone are treated the same way.
WITH dead AS (
    DELETE FROM soniq_workers
    WHERE last_heartbeat < now() - make_interval(secs => %(timeout)s::float8)
    RETURNING id
), lost AS (
    SELECT j.id FROM soniq_jobs AS j
    WHERE j.worker_id IS NOT NULL  -- in flight (soniq_jobs_worker_idx)
      AND j.status = 'processing'
      AND (j.worker_id IN (SELECT id FROM dead)
           OR NOT EXISTS (SELECT 1 FROM soniq_workers AS w WHERE w.id = j.worker_id))
    FOR UPDATE OF j SKIP LOCKED
), exhausted AS (
    DELETE FROM soniq_jobs AS j USING lost
    WHERE j.id = lost.id AND j.attempts >= j.max_attempts AND j.cancel_requested_at IS NULL
    RETURNING j.*
), buried AS (
    INSERT INTO soniq_dead_letter_jobs
        (id, job_name, args, queue, priority, attempts, max_attempts, reason, last_error,
         original_created_at, started_at, limit_key, progress, watched)
    SELECT id, job_name, args, queue, priority, attempts, max_attempts,
           'Worker died during the final attempt.', last_error, created_at, started_at,
           limit_key, progress, watched
    FROM exhausted
    RETURNING id, queue, job_name, watched
), requeued AS (
    -- A job whose cancellation was requested ends cancelled instead, even on its last
    -- attempt: a dead letter would invite replaying what somebody chose to stop.
    UPDATE soniq_jobs AS j
    SET status = CASE WHEN j.cancel_requested_at IS NULL THEN 'queued' ELSE 'cancelled' END,
        finished_at = CASE WHEN j.cancel_requested_at IS NULL THEN j.finished_at ELSE now() END,
        worker_id = NULL, updated_at = now(),
        last_error = 'Worker stopped heartbeating during this attempt.'
    FROM lost
    WHERE j.id = lost.id
      AND (j.attempts < j.max_attempts OR j.cancel_requested_at IS NOT NULL)
    RETURNING j.id, j.queue, j.job_name, j.status, j.watched
), counted AS (
    -- The attempts that died, in soniq_stats as the worker would have counted them:
    -- retried, cancelled or dead. Keys in order, as every stats upsert takes them.
    INSERT INTO soniq_stats AS s (minute, queue, job_name, retried, dead, cancelled)
    SELECT date_trunc('minute', now()), queue, job_name,
           count(*) FILTER (WHERE outcome = 'queued'), count(*) FILTER (WHERE outcome = 'dead'),
           count(*) FILTER (WHERE outcome = 'cancelled')
    FROM (SELECT queue, job_name, status FROM requeued
          UNION ALL SELECT queue, job_name, 'dead' FROM buried) AS ended(queue, job_name, outcome)
    GROUP BY queue, job_name
    ORDER BY queue, job_name
    ON CONFLICT (minute, queue, job_name) DO UPDATE SET
        retried = s.retried + EXCLUDED.retried, dead = s.dead + EXCLUDED.dead,
        cancelled = s.cancelled + EXCLUDED.cancelled
)
SELECT (SELECT count(*) FROM dead)::int AS workers,
       (SELECT count(*) FROM requeued)::int AS requeued,
       (SELECT count(*) FROM buried)::int AS dead_lettered,
       (SELECT pg_notify('soniq_new_job', queue) FROM requeued
        WHERE status = 'queued' LIMIT 1) AS woke,
       -- The events of watched jobs among them ("r", "c" or "x", see notify_job_events),
       -- which the caller sends; NULL for none, the usual case.
       NULLIF(ARRAY(SELECT CASE WHEN status = 'queued' THEN 'r' ELSE 'c' END || ':' || id::text
                    FROM requeued WHERE watched
                    UNION ALL
                    SELECT 'x:' || id::text FROM buried WHERE watched), '{}') AS events

-- ---------------------------------------------------------------------------------
-- Metrics
-- ---------------------------------------------------------------------------------

-- name: queue_gauges
-- The metrics' per-queue gauges, read by each worker every SONIQ_METRICS_INTERVAL
-- seconds (never per job or per scrape): jobs ready to run now, and how long the
-- oldest of them has been ready. It walks the claim and limited indexes' rows, and the
-- delayed jobs that are due but not yet promoted.
SELECT queue, sum(n)::bigint AS depth,
       EXTRACT(EPOCH FROM now() - min(oldest))::float8 AS oldest_age
FROM (
    SELECT queue, count(*) AS n, min(scheduled_at) AS oldest FROM soniq_jobs
    WHERE status = 'queued' AND NOT delayed AND limit_key IS NULL AND scheduled_at <= now()
      AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
    GROUP BY queue
    UNION ALL
    SELECT queue, count(*), min(scheduled_at) FROM soniq_jobs
    WHERE status = 'queued' AND NOT delayed AND limit_key IS NOT NULL AND scheduled_at <= now()
      AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
    GROUP BY queue
    UNION ALL
    SELECT queue, count(*), min(scheduled_at) FROM soniq_jobs
    WHERE status = 'queued' AND delayed AND scheduled_at <= now()
      AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
    GROUP BY queue
) AS due
GROUP BY queue

-- ---------------------------------------------------------------------------------
-- Retention
-- ---------------------------------------------------------------------------------

-- name: promote_due_jobs
-- Delayed jobs whose time has come join the claim's index, oldest first, up to %(limit)s
-- per call (a worker calls again at once while calls come back full), and the workers
-- of their queues are woken. next_due: seconds until the next delayed job falls due
-- (NULL: none waits), so that an idle worker can sleep until then. The UPDATE changes
-- only the flag: to every reader the job was queued and due all along.
WITH moved AS (
    UPDATE soniq_jobs SET delayed = false
    WHERE id = ANY(ARRAY(
        SELECT id FROM soniq_jobs
        WHERE status = 'queued' AND delayed AND scheduled_at <= now()
        ORDER BY scheduled_at
        LIMIT %(limit)s::int
        FOR UPDATE SKIP LOCKED
    ))
    RETURNING queue
)
SELECT (SELECT count(*) FROM moved)::int AS moved,
       (SELECT count(pg_notify('soniq_new_job', q))
        FROM (SELECT DISTINCT queue FROM moved) AS queues(q))::int AS woke,
       (SELECT EXTRACT(EPOCH FROM min(scheduled_at) - now())::float8 FROM soniq_jobs
        WHERE status = 'queued' AND delayed AND scheduled_at > now()) AS next_due

-- name: stats_flush
-- A worker's outcome counts since its last flush (a JSON array of objects, sorted by
-- queue and task name so that concurrent upserts lock rows in one order), added to the
-- current minute's rows. Rows older than a week go in the same statement: through the
-- primary key, usually none.
WITH expired AS (
    DELETE FROM soniq_stats WHERE minute < now() - interval '7 days'
)
INSERT INTO soniq_stats AS s
    (minute, queue, job_name, done, retried, dead, cancelled, runtime_sum, runtime_max)
SELECT date_trunc('minute', now()), r.queue, r.job_name, r.done, r.retried, r.dead,
       r.cancelled, r.runtime_sum, r.runtime_max
FROM jsonb_to_recordset(%(rows)s::text::jsonb) AS r(
    queue text, job_name text, done int, retried int, dead int, cancelled int,
    runtime_sum float8, runtime_max float8
)
ON CONFLICT (minute, queue, job_name) DO UPDATE SET
    done = s.done + EXCLUDED.done, retried = s.retried + EXCLUDED.retried,
    dead = s.dead + EXCLUDED.dead, cancelled = s.cancelled + EXCLUDED.cancelled,
    runtime_sum = s.runtime_sum + EXCLUDED.runtime_sum,
    runtime_max = GREATEST(s.runtime_max, EXCLUDED.runtime_max)

-- name: prune_cutoff
-- One cutoff per prune run, on the database's clock: rows that finish while the run
-- goes on are not chased, so a run always ends.
SELECT now() - make_interval(secs => %(older_than)s::float8) AS cutoff

-- name: prune_finished_jobs
-- One batch, oldest first, through soniq_jobs_finished_idx. SKIP LOCKED: a row some
-- other statement holds is left for the next run instead of waited for, and two
-- prunes running side by side take different rows.
WITH gone AS (
    DELETE FROM soniq_jobs
    WHERE id = ANY(ARRAY(
        SELECT id FROM soniq_jobs
        WHERE status IN ('done', 'cancelled') AND finished_at < %(cutoff)s::timestamptz
        ORDER BY finished_at
        LIMIT %(limit)s::int
        FOR UPDATE SKIP LOCKED
    ))
    RETURNING 1
)
SELECT count(*)::int AS deleted FROM gone

-- name: prune_try_lock
-- Each batch of the workers' sweep runs under this transaction-scoped lock, so one
-- worker sweeps at a time (and a pooler cannot strand it: it ends with the batch).
SELECT pg_try_advisory_xact_lock(%(key)s::bigint) AS locked

-- ---------------------------------------------------------------------------------
-- Status, workers, task names and migrations (the operator commands)
-- ---------------------------------------------------------------------------------

-- name: queue_status
-- Per queue: jobs runnable now, waiting for their time, running; how long the oldest
-- runnable job has been due; dead letters; and what finished over the last hour and
-- minute, from soniq_stats. Each live count reads only its own partial index's rows
-- (claim, limited, delayed, in flight), so the cost follows the live jobs and never the
-- finished rows that retention keeps.
-- A stats row covers one minute; ends_in is the seconds until that minute ends
-- (negative once it has). A window takes the minutes inside it whole and the one it cuts
-- in proportion to the part inside (the minute under way counts in full: all of it so
-- far is inside), which is exact while the rate holds steady within a minute.
WITH parts(queue, runnable, scheduled, processing, oldest_due, done, cancelled, failed,
           done_last_minute, dead_letter) AS (
    SELECT queue, count(*) FILTER (WHERE scheduled_at <= now()),
           count(*) FILTER (WHERE scheduled_at > now()), 0,
           min(scheduled_at) FILTER (WHERE scheduled_at <= now()), 0, 0, 0, 0, 0
    FROM soniq_jobs WHERE status = 'queued' AND NOT delayed AND limit_key IS NULL
    GROUP BY queue
    UNION ALL
    SELECT queue, count(*) FILTER (WHERE scheduled_at <= now()),
           count(*) FILTER (WHERE scheduled_at > now()), 0,
           min(scheduled_at) FILTER (WHERE scheduled_at <= now()), 0, 0, 0, 0, 0
    FROM soniq_jobs WHERE status = 'queued' AND NOT delayed AND limit_key IS NOT NULL
    GROUP BY queue
    UNION ALL
    SELECT queue, count(*) FILTER (WHERE scheduled_at <= now()),
           count(*) FILTER (WHERE scheduled_at > now()), 0,
           min(scheduled_at) FILTER (WHERE scheduled_at <= now()), 0, 0, 0, 0, 0
    FROM soniq_jobs WHERE status = 'queued' AND delayed GROUP BY queue
    UNION ALL
    SELECT queue, 0, 0, count(*), NULL, 0, 0, 0, 0, 0
    FROM soniq_jobs WHERE worker_id IS NOT NULL AND status = 'processing' GROUP BY queue
    UNION ALL
    SELECT st.queue, 0, 0, 0, NULL, sum(st.done * w.in_hour), sum(st.cancelled * w.in_hour),
           sum((st.retried + st.dead) * w.in_hour), sum(st.done * w.in_minute), 0
    FROM soniq_stats AS st,
         LATERAL (SELECT EXTRACT(EPOCH FROM st.minute - now()) + 60 AS ends_in) AS b,
         LATERAL (SELECT LEAST(1, GREATEST(0, (b.ends_in + 3600) / 60)) AS in_hour,
                         LEAST(1, GREATEST(0, (b.ends_in + 60) / 60)) AS in_minute) AS w
    WHERE st.minute > now() - interval '61 minutes'
    GROUP BY st.queue
    UNION ALL
    SELECT queue, 0, 0, 0, NULL, 0, 0, 0, 0, count(*)
    FROM soniq_dead_letter_jobs GROUP BY queue
)
SELECT queue, sum(runnable)::int AS runnable, sum(scheduled)::int AS scheduled,
       sum(processing)::int AS processing, round(sum(done))::int AS done,
       round(sum(cancelled))::int AS cancelled, round(sum(failed))::int AS failed,
       sum(dead_letter)::int AS dead_letter,
       EXTRACT(EPOCH FROM now() - min(oldest_due))::float8 AS oldest_runnable_age,
       round(sum(done_last_minute))::int AS done_last_minute
FROM parts
GROUP BY queue
ORDER BY queue

-- name: list_workers
-- Every registered worker, with how long it has been silent and the jobs it holds.
SELECT w.id::text, w.hostname, w.pid, w.queues, w.concurrency, w.started_at,
       w.last_heartbeat,
       EXTRACT(EPOCH FROM now() - w.last_heartbeat)::float8 AS seconds_since_heartbeat,
       w.last_heartbeat < now() - make_interval(secs => %(timeout)s::float8) AS stale,
       (SELECT count(*) FROM soniq_jobs AS j
        WHERE j.worker_id = w.id AND j.status = 'processing')::int AS jobs_in_flight
FROM soniq_workers AS w
ORDER BY w.started_at, w.id

-- name: task_names_in_use
-- Task names of the jobs that still need a handler (queued or running) and of the
-- dead letters, with a count for each.
-- The parts are the rows of the claim, limited, delayed and in-flight indexes.
WITH live AS (
    SELECT job_name,
           count(*) FILTER (WHERE status = 'queued') AS queued,
           count(*) FILTER (WHERE status = 'processing') AS processing
    FROM (
        SELECT job_name, status FROM soniq_jobs
        WHERE status = 'queued' AND NOT delayed AND limit_key IS NULL
        UNION ALL
        SELECT job_name, status FROM soniq_jobs
        WHERE status = 'queued' AND NOT delayed AND limit_key IS NOT NULL
        UNION ALL
        SELECT job_name, status FROM soniq_jobs WHERE status = 'queued' AND delayed
        UNION ALL
        SELECT job_name, status FROM soniq_jobs
        WHERE worker_id IS NOT NULL AND status = 'processing'
    ) AS j
    GROUP BY job_name
), dead AS (
    SELECT job_name, count(*) AS dead_letter FROM soniq_dead_letter_jobs GROUP BY job_name
)
SELECT COALESCE(live.job_name, dead.job_name) AS job_name,
       COALESCE(queued, 0)::int AS queued, COALESCE(processing, 0)::int AS processing,
       COALESCE(dead_letter, 0)::int AS dead_letter
FROM live FULL JOIN dead ON live.job_name = dead.job_name
ORDER BY 1

-- name: migrations_applied
-- Only once schema_version has found soniq_migrations (it exists after any setup).
SELECT version, applied_at FROM soniq_migrations ORDER BY version

-- ---------------------------------------------------------------------------------
-- Dead letters
-- ---------------------------------------------------------------------------------

-- Every bulk query takes the same filters (None: no filter). "reason" is an ILIKE
-- pattern built by soniq.filters.like_pattern, matched against the reason and the
-- last error; since is inclusive and until exclusive, both on dead_lettered_at.
-- Order is newest first, (dead_lettered_at, id) descending, everywhere: the bulk
-- operations page by keyset on that pair (before_at/before_id: the last row of the
-- previous page), so a page never repeats a row and rows dead-lettered meanwhile,
-- which sort first, are never reached.

-- name: _dead_letter_filter
-- A fragment, not a query: the dead-letter filters (job name, queue, reason or error
-- text as a LIKE pattern, dead-lettered time range), for the queries that include it.
-- Every one of its parameters may be NULL: no filter on that column.
(%(job_name)s::text IS NULL OR job_name = %(job_name)s::text)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(reason)s::text IS NULL OR reason ILIKE %(reason)s::text ESCAPE '\'
       OR last_error ILIKE %(reason)s::text ESCAPE '\')
  AND (%(since)s::timestamptz IS NULL OR dead_lettered_at >= %(since)s::timestamptz)
  AND (%(until)s::timestamptz IS NULL OR dead_lettered_at < %(until)s::timestamptz)

-- name: dead_letter_list
SELECT id::text, job_name, args, queue, priority, attempts, max_attempts, reason,
       last_error, traceback, original_created_at, started_at, dead_lettered_at,
       resurrection_count, last_resurrected_at, limit_key
FROM soniq_dead_letter_jobs
WHERE
-- include: _dead_letter_filter
ORDER BY dead_lettered_at DESC, id DESC
LIMIT %(limit)s::int OFFSET %(offset)s::int

-- name: dead_letter_count
SELECT count(*)::int AS count
FROM soniq_dead_letter_jobs
WHERE
-- include: _dead_letter_filter

-- name: dead_letter_page
SELECT id::text, job_name, args, queue, priority, attempts, max_attempts, reason,
       last_error, traceback, original_created_at, started_at, dead_lettered_at,
       resurrection_count, last_resurrected_at, limit_key
FROM soniq_dead_letter_jobs
WHERE
-- include: _dead_letter_filter
  AND (%(before_at)s::timestamptz IS NULL
       OR (dead_lettered_at, id) < (%(before_at)s::timestamptz, %(before_id)s::uuid))
ORDER BY dead_lettered_at DESC, id DESC
LIMIT %(limit)s::int

-- name: dead_letter_get
SELECT id::text, job_name, args, queue, priority, attempts, max_attempts, reason,
       last_error, traceback, original_created_at, started_at, dead_lettered_at,
       resurrection_count, last_resurrected_at, limit_key
FROM soniq_dead_letter_jobs WHERE id = %(id)s::uuid

-- name: dead_letter_replay
-- A fresh queued row from the dead letter; the dead letter stays, counting replays.
WITH src AS (
    UPDATE soniq_dead_letter_jobs
    SET resurrection_count = resurrection_count + 1, last_resurrected_at = now()
    WHERE id = %(id)s::uuid
    RETURNING job_name, args, queue, priority, max_attempts, limit_key
), ins AS (
    INSERT INTO soniq_jobs (id, job_name, args, queue, priority, max_attempts, limit_key)
    SELECT %(new_id)s::uuid, job_name, args, queue, priority, max_attempts, limit_key FROM src
    RETURNING id, queue
)
SELECT id::text, pg_notify('soniq_new_job', queue) FROM ins

-- name: dead_letter_replay_batch
-- replay for one page of matching dead letters, in one statement: all of the page is
-- replayed or none. The rows are locked (a concurrent purge waits), paired in order
-- with the new ids the caller minted, counted as resurrected and copied into
-- soniq_jobs; workers get one NOTIFY per queue for the page.
WITH picked AS (
    SELECT id, job_name, args, queue, priority, max_attempts, limit_key, dead_lettered_at
    FROM soniq_dead_letter_jobs
    WHERE
-- include: _dead_letter_filter
    AND (%(before_at)s::timestamptz IS NULL
       OR (dead_lettered_at, id) < (%(before_at)s::timestamptz, %(before_id)s::uuid))
    ORDER BY dead_lettered_at DESC, id DESC
    LIMIT %(limit)s::int
    FOR UPDATE
), paired AS (
    SELECT p.*, ids.new_id
    FROM (SELECT picked.*,
                 row_number() OVER (ORDER BY dead_lettered_at DESC, id DESC) AS n
          FROM picked) AS p
    JOIN unnest(%(new_ids)s::uuid[]) WITH ORDINALITY AS ids(new_id, n) USING (n)
), bumped AS (
    UPDATE soniq_dead_letter_jobs AS d
    SET resurrection_count = d.resurrection_count + 1, last_resurrected_at = now()
    FROM paired
    WHERE d.id = paired.id
), ins AS (
    INSERT INTO soniq_jobs (id, job_name, args, queue, priority, max_attempts, limit_key)
    SELECT new_id, job_name, args, queue, priority, max_attempts, limit_key FROM paired
    ORDER BY n
    RETURNING queue
)
SELECT new_id::text AS id, id::text AS dead_letter_id, dead_lettered_at,
       (SELECT count(pg_notify('soniq_new_job', q))
        FROM (SELECT DISTINCT queue FROM ins) AS queues(q)) AS woke
FROM paired
ORDER BY n

-- name: dead_letter_purge
WITH gone AS (
    DELETE FROM soniq_dead_letter_jobs
    WHERE
-- include: _dead_letter_filter
    RETURNING 1
)
SELECT count(*)::int AS count FROM gone

-- name: dead_letter_import
-- One batch of checked export lines, as a JSON array of objects. Ids already in the
-- table (or repeated in the batch) are skipped; the count of rows written is returned.
WITH incoming AS (
    SELECT * FROM jsonb_to_recordset(%(rows)s::text::jsonb) AS r(
        id uuid, job_name text, args jsonb, queue text, priority int, attempts int,
        max_attempts int, reason text, last_error text, traceback text,
        original_created_at timestamptz, started_at timestamptz,
        dead_lettered_at timestamptz, resurrection_count int,
        last_resurrected_at timestamptz, limit_key text
    )
), ins AS (
    INSERT INTO soniq_dead_letter_jobs
        (id, job_name, args, queue, priority, attempts, max_attempts, reason, last_error,
         traceback, original_created_at, started_at, dead_lettered_at, resurrection_count,
         last_resurrected_at, limit_key)
    SELECT id, job_name, args, queue, priority, attempts, max_attempts, reason, last_error,
           traceback, original_created_at, started_at, dead_lettered_at,
           resurrection_count, last_resurrected_at, limit_key
    FROM incoming
    ON CONFLICT (id) DO NOTHING
    RETURNING 1
)
SELECT count(*)::int AS count FROM ins

-- ---------------------------------------------------------------------------------
-- Scheduler
-- ---------------------------------------------------------------------------------

-- name: schedule_upsert
-- app.scheduler.add() and the scheduler's start-up sync of @app.periodic declarations.
-- Re-adding a name updates the row in place. Its status stays (a paused schedule stays
-- paused), and so does its next run unless the timing itself changed.
INSERT INTO soniq_recurring_jobs AS r
    (name, cron, interval_seconds, timezone, args, queue, priority, catch_up, next_run_at)
VALUES (
    %(name)s, %(cron)s::text, %(interval_seconds)s::float8, %(timezone)s,
    %(args)s::text::jsonb, %(queue)s::text, %(priority)s::int, %(catch_up)s::bool,
    %(next_run_at)s::timestamptz
)
ON CONFLICT (name) DO UPDATE SET
    next_run_at = CASE
        WHEN r.cron IS NOT DISTINCT FROM EXCLUDED.cron
         AND r.interval_seconds IS NOT DISTINCT FROM EXCLUDED.interval_seconds
         AND r.timezone = EXCLUDED.timezone
         AND r.next_run_at IS NOT NULL
        THEN r.next_run_at
        ELSE EXCLUDED.next_run_at
    END,
    cron = EXCLUDED.cron,
    interval_seconds = EXCLUDED.interval_seconds,
    timezone = EXCLUDED.timezone,
    args = EXCLUDED.args,
    queue = EXCLUDED.queue,
    priority = EXCLUDED.priority,
    catch_up = EXCLUDED.catch_up,
    updated_at = now()
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
WHERE (%(status)s::text IS NULL OR status = %(status)s::text)
ORDER BY name

-- name: schedule_pause
UPDATE soniq_recurring_jobs SET status = 'paused', updated_at = now()
WHERE name = %(name)s
RETURNING name

-- name: schedule_resume
-- The next run is counted from now: runs that fell due while paused are not made up.
-- An active schedule keeps its next run.
UPDATE soniq_recurring_jobs
SET next_run_at = CASE WHEN status = 'paused' OR next_run_at IS NULL
                       THEN %(next_run_at)s::timestamptz ELSE next_run_at END,
    status = 'active', updated_at = now()
WHERE name = %(name)s
RETURNING name

-- name: schedule_remove
DELETE FROM soniq_recurring_jobs WHERE name = %(name)s RETURNING name

-- name: scheduler_now
-- The database's clock: every process computes next runs from the same one.
SELECT now() AS now

-- name: scheduler_due
SELECT name, cron, interval_seconds, timezone, args, queue, priority, catch_up,
       next_run_at, now() AS now
FROM soniq_recurring_jobs
WHERE status = 'active' AND next_run_at <= now()
ORDER BY next_run_at, name
LIMIT %(limit)s::int

-- name: scheduler_advance
-- Claims one due run: only the first transaction to move next_run_at on from the value
-- it read matches, so a run is enqueued at most once, whichever scheduler leads.
UPDATE soniq_recurring_jobs
SET next_run_at = %(next_run_at)s::timestamptz,
    last_run_at = COALESCE(%(fired_at)s::timestamptz, last_run_at),
    updated_at = now()
WHERE name = %(name)s AND status = 'active' AND next_run_at = %(due)s::timestamptz
RETURNING name

-- name: scheduler_seconds_to_next
SELECT EXTRACT(EPOCH FROM min(next_run_at) - now())::float8 AS seconds
FROM soniq_recurring_jobs WHERE status = 'active'

-- name: scheduler_try_lead
-- Leadership is a session advisory lock: it lasts as long as this connection does.
SELECT pg_try_advisory_lock(%(key)s::bigint) AS leading

-- name: scheduler_ping
SELECT 1

-- ----------------------------------------------------------------------------- demo
-- `soniq demo` on a server the user named runs in a database of its own, so their
-- workers never see its jobs. The name is Soniq's (soniq_demo_<hex>), and is
-- composed in as a quoted identifier: CREATE/DROP DATABASE take no parameters.

-- name: listen
-- A worker's LISTEN connection subscribes to each channel it wants; {channel} is an
-- identifier (Query.with_identifiers).
LISTEN {channel}

-- name: create_database
-- {database} and {template} are identifiers (Query.with_identifiers): soniq demo's
-- scratch database, and the pytest plugin's test databases.
CREATE DATABASE {database} TEMPLATE {template}

-- name: database_exists
-- Asked on the maintenance database by setup(), when the target would not connect.
SELECT 1 FROM pg_database WHERE datname = %(name)s

-- name: create_empty_database
-- setup() on a missing database: {database} is an identifier (Query.with_identifiers).
CREATE DATABASE {database}

-- name: drop_database
-- FORCE (PostgreSQL 13+) ends sessions a test or an interrupted demo left open.
DROP DATABASE IF EXISTS {database} WITH (FORCE)

-- -------------------------------------------------------------------------- testing
-- soniq.testing: helpers for an application's tests. They run on a test database,
-- never under production load, so they favour plain scans over new indexes.

-- name: testing_enqueued_jobs
-- Jobs waiting to run (due now or later), oldest first: what a test enqueued.
SELECT id::text, job_name, args, queue, priority, status, attempts, max_attempts,
       dedup_key, scheduled_at, created_at, updated_at, started_at, finished_at,
       worker_id::text, result, last_error, cancel_requested_at
FROM soniq_jobs
WHERE status = 'queued'
  AND (%(job_name)s::text IS NULL OR job_name = %(job_name)s::text)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
ORDER BY created_at, id

-- name: testing_make_due
-- drain(skip_delays=True): waiting jobs (retry delays, schedule(), snoozes) are due now.
WITH moved AS (
    UPDATE soniq_jobs SET scheduled_at = LEAST(scheduled_at, now()), delayed = false,
        updated_at = now()
    WHERE status = 'queued' AND (scheduled_at > now() OR delayed)
      AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
    RETURNING 1
)
SELECT count(*)::int AS moved FROM moved

-- name: testing_runnable
-- Jobs a worker on these queues could claim now, by task name.
SELECT job_name, count(*)::int AS jobs
FROM soniq_jobs
WHERE status = 'queued' AND scheduled_at <= now()
  AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
GROUP BY job_name
ORDER BY job_name

-- The pytest plugin's databases: a template migrated once per session, cloned per
-- test. Names are the plugin's own (soniq_test_<hex>), composed in as quoted
-- identifiers: these statements take no parameters.

-- name: testing_close_template
-- CREATE DATABASE ... TEMPLATE needs the template idle: nobody may connect from now on.
ALTER DATABASE {database} WITH ALLOW_CONNECTIONS false

-- name: testing_end_sessions
SELECT pg_terminate_backend(pid) FROM pg_stat_activity
WHERE datname = %(database)s AND pid <> pg_backend_pid()

-- name: testing_ping
SELECT 1

-- name: register_tasks
-- The tasks one worker serves (rows: a JSON array of {task_name, queue, args_schema
-- (JSON text or null), args_model_repr}), written or refreshed with last_seen_at = now.
-- Rows no worker has refreshed for a week go in the same statement (never this
-- worker's own, which the upsert writes).
WITH expired AS (
    DELETE FROM soniq_task_registry
    WHERE last_seen_at < now() - interval '7 days' AND worker_id <> %(worker_id)s
)
INSERT INTO soniq_task_registry AS t
    (task_name, worker_id, last_seen_at, args_model_repr, queue, worker_queues,
     args_schema, hostname)
SELECT r.task_name, %(worker_id)s, now(), r.args_model_repr, r.queue,
       %(worker_queues)s::text[], r.args_schema::jsonb, %(hostname)s
FROM jsonb_to_recordset(%(rows)s::text::jsonb) AS r(
    task_name text, queue text, args_schema text, args_model_repr text
)
ORDER BY r.task_name
ON CONFLICT (task_name, worker_id) DO UPDATE SET
    last_seen_at = EXCLUDED.last_seen_at, args_model_repr = EXCLUDED.args_model_repr,
    queue = EXCLUDED.queue, worker_queues = EXCLUDED.worker_queues,
    args_schema = EXCLUDED.args_schema, hostname = EXCLUDED.hostname

-- name: served_tasks
-- The fleet's task registry: rows refreshed in the last max_age seconds, by task name.
SELECT task_name, worker_id, hostname, queue, worker_queues, args_schema,
       args_model_repr, last_seen_at
FROM soniq_task_registry
WHERE last_seen_at >= now() - make_interval(secs => %(max_age)s::float8)
ORDER BY task_name, last_seen_at DESC, worker_id

-- Webhooks (soniq.webhooks): endpoints, and one delivery row per event and endpoint.
-- JSON columns come back as text (decoded by the store), whatever the connection's codec.

-- name: webhook_endpoint_insert
INSERT INTO soniq_webhook_endpoints
    (id, url, secret, events, active, max_retries, timeout_seconds, headers)
VALUES (
    %(id)s, %(url)s, %(secret)s, %(events)s::text::jsonb, %(active)s::boolean,
    %(max_retries)s::int, %(timeout_seconds)s::float8, %(headers)s::text::jsonb
)
RETURNING id

-- name: webhook_endpoint_delete
-- Its deliveries go with it (ON DELETE CASCADE); their jobs then find nothing to send.
DELETE FROM soniq_webhook_endpoints WHERE id = %(id)s RETURNING id

-- name: webhook_endpoint_list
SELECT id, url, secret IS NOT NULL AS signed, events::text AS events, active, max_retries,
       timeout_seconds, headers::text AS headers, created_at, updated_at
FROM soniq_webhook_endpoints
ORDER BY created_at, id

-- name: webhook_endpoint_get
SELECT id, url, secret IS NOT NULL AS signed, events::text AS events, active, max_retries,
       timeout_seconds, headers::text AS headers, created_at, updated_at
FROM soniq_webhook_endpoints
WHERE id = %(id)s

-- name: webhook_endpoints_for_event
-- The active endpoints that take the event, locked against a concurrent unregister
-- until the deliveries are written in the same transaction.
SELECT id, max_retries
FROM soniq_webhook_endpoints
WHERE active
  AND (events IS NULL OR events @> jsonb_build_array(%(event)s::text))
  AND (%(endpoint_id)s::text IS NULL OR id = %(endpoint_id)s::text)
ORDER BY id
FOR SHARE

-- name: webhook_deliveries_insert
-- The arrays are literals ('{a,b}') of ids Soniq made, in step with each other.
INSERT INTO soniq_webhook_deliveries (id, endpoint_id, job_id, event, body, max_attempts)
SELECT d.id, d.endpoint_id, d.job_id::uuid, %(event)s, %(body)s, d.max_attempts
FROM unnest(%(ids)s::text[], %(endpoint_ids)s::text[], %(job_ids)s::text[],
            %(max_attempts)s::int[]) AS d (id, endpoint_id, job_id, max_attempts)
RETURNING id

-- name: webhook_delivery_begin
-- Count the attempt before sending, so that a worker dying mid-request still spends it.
-- A failed delivery run by another job than the one that failed it (its dead letter,
-- replayed) starts over with fresh attempts.
UPDATE soniq_webhook_deliveries d
SET attempts = CASE WHEN d.status = 'pending' THEN d.attempts + 1 ELSE 1 END,
    status = 'pending', job_id = %(job_id)s::uuid, updated_at = now()
FROM soniq_webhook_endpoints e
WHERE d.id = %(id)s AND e.id = d.endpoint_id
  AND (d.status = 'pending'
       OR (d.status = 'failed' AND d.job_id IS DISTINCT FROM %(job_id)s::uuid))
RETURNING d.id, d.endpoint_id, d.event, d.body, d.attempts, d.max_attempts, e.url,
          e.secret, e.active, e.timeout_seconds, e.headers::text AS headers

-- name: webhook_delivery_record
UPDATE soniq_webhook_deliveries
SET status = %(status)s, last_error = %(last_error)s::text,
    response_status = %(response_status)s::int, response_body = %(response_body)s::text,
    duration_ms = %(duration_ms)s::float8,
    next_retry_at = now() + make_interval(secs => %(retry_in)s::float8),
    delivered_at = CASE WHEN %(status)s = 'delivered' THEN now() END,
    updated_at = now()
WHERE id = %(id)s
RETURNING id

-- name: webhook_delivery_get
SELECT id, endpoint_id, job_id::text AS job_id, event, body, status, attempts,
       max_attempts, next_retry_at, last_error, response_status, response_body, duration_ms,
       created_at, updated_at, delivered_at
FROM soniq_webhook_deliveries
WHERE id = %(id)s

-- name: webhook_delivery_list
SELECT id, endpoint_id, job_id::text AS job_id, event, body, status, attempts,
       max_attempts, next_retry_at, last_error, response_status, response_body, duration_ms,
       created_at, updated_at, delivered_at
FROM soniq_webhook_deliveries
WHERE (%(endpoint_id)s::text IS NULL OR endpoint_id = %(endpoint_id)s::text)
  AND (%(status)s::text IS NULL OR status = %(status)s::text)
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s::int

-- name: webhook_delivery_stats
SELECT count(*) AS total,
       count(*) FILTER (WHERE status = 'delivered') AS delivered,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       count(*) FILTER (WHERE status = 'pending') AS pending,
       avg(duration_ms) FILTER (WHERE status = 'delivered') AS avg_duration_ms
FROM soniq_webhook_deliveries
WHERE created_at >= now() - make_interval(secs => %(seconds)s::float8)

-- name: queue_pause
-- Pause a queue ('*': every queue) until paused_until (NULL: until resumed). Workers
-- hear of it on soniq_control; the claim does not need them to (see claim_jobs).
WITH up AS (
    INSERT INTO soniq_queues AS q (name, paused_at, paused_until, paused_reason, paused_by)
    VALUES (%(name)s, now(), %(until)s::timestamptz, %(reason)s::text, %(by)s::text)
    ON CONFLICT (name) DO UPDATE
    SET paused_at = now(), paused_until = EXCLUDED.paused_until,
        paused_reason = EXCLUDED.paused_reason, paused_by = EXCLUDED.paused_by,
        control_version = nextval('soniq_control_seq'), updated_at = now()
    RETURNING name, paused_at, paused_until, paused_reason, paused_by, control_version
)
SELECT up.*, pg_notify('soniq_control', 'pause:' || up.name) IS NULL AS _notified FROM up

-- name: queue_resume
-- Lift a queue's pause; true if it was paused. Idle workers of the queue are woken.
WITH res AS (
    UPDATE soniq_queues
    SET paused_at = NULL, paused_until = NULL, paused_reason = NULL, paused_by = NULL,
        control_version = nextval('soniq_control_seq'), updated_at = now()
    WHERE name = %(name)s AND paused_at IS NOT NULL
      AND (paused_until IS NULL OR paused_until > now())
    RETURNING name
)
SELECT res.name,
       pg_notify('soniq_control', 'resume:' || res.name) IS NULL AS _control,
       pg_notify('soniq_new_job', res.name) IS NULL AS _woken
FROM res

-- name: queue_list
-- Every queue that has jobs waiting or running, a pause in force, or limits, with its
-- state. The counts come from the claim and worker indexes' predicates (queued,
-- processing).
WITH paused AS (
    SELECT name, paused_at IS NOT NULL AND (paused_until IS NULL OR paused_until > now())
               AS in_force,
           paused_at, paused_until, paused_reason, paused_by,
           concurrency, rate_limit, rate_period, burst
    FROM soniq_queues
    WHERE (paused_at IS NOT NULL AND (paused_until IS NULL OR paused_until > now()))
       OR concurrency IS NOT NULL OR rate_limit IS NOT NULL
), counts AS (
    SELECT queue AS name,
           count(*) FILTER (WHERE status = 'queued')::int AS queued,
           count(*) FILTER (WHERE status = 'processing')::int AS processing
    FROM soniq_jobs WHERE status IN ('queued', 'processing') GROUP BY queue
)
SELECT COALESCE(c.name, p.name) AS name, COALESCE(p.in_force, false) AS paused,
       CASE WHEN p.in_force THEN p.paused_at END AS paused_at,
       CASE WHEN p.in_force THEN p.paused_until END AS paused_until,
       CASE WHEN p.in_force THEN p.paused_reason END AS paused_reason,
       CASE WHEN p.in_force THEN p.paused_by END AS paused_by,
       p.concurrency, p.rate_limit, p.rate_period, COALESCE(p.burst, 1) AS burst,
       COALESCE(c.queued, 0) AS queued, COALESCE(c.processing, 0) AS processing
FROM counts c FULL JOIN paused p ON p.name = c.name
ORDER BY 1

-- name: queue_limited
-- The queues with limits of their own, by name.
SELECT name, concurrency, rate_limit, rate_period, burst FROM soniq_queues
WHERE concurrency IS NOT NULL OR rate_limit IS NOT NULL
ORDER BY name

-- name: queue_paused
-- The pauses in force now, by queue name ('*': every queue).
SELECT name, paused_at, paused_until, paused_reason, paused_by FROM soniq_queues
WHERE paused_at IS NOT NULL AND (paused_until IS NULL OR paused_until > now())
ORDER BY name

-- name: queue_index_add
-- The optional index of claim_jobs_by_queue: claim_jobs' index with the queue first.
-- CONCURRENTLY, so enqueues and claims go on while it is built (it cannot run inside a
-- transaction block; the statement runs on an autocommit connection).
CREATE INDEX CONCURRENTLY IF NOT EXISTS soniq_jobs_queue_claim_idx
    ON soniq_jobs (queue, priority, scheduled_at, id)
    WHERE status = 'queued' AND NOT delayed AND limit_key IS NULL

-- name: queue_index_drop
DROP INDEX CONCURRENTLY IF EXISTS soniq_jobs_queue_claim_idx

-- name: queue_index_state
-- Whether the index exists, and whether it is valid (a CREATE INDEX CONCURRENTLY that
-- failed or was interrupted leaves it invalid: never used, yet still written to).
SELECT i.indexrelid IS NOT NULL AS present, COALESCE(i.indisvalid, false) AS valid
FROM (SELECT to_regclass('soniq_jobs_queue_claim_idx') AS oid) AS r
LEFT JOIN pg_index AS i ON i.indexrelid = r.oid

-- name: queue_index_announce
-- Tell the workers to read the queue index's state again (with the pauses).
SELECT pg_notify('soniq_control', 'queue-index')

-- name: queue_set_limits
-- A queue's own limits (both at once: the one not given is no limit). A new control
-- version makes every worker read them again (claim_gated is what takes the queue's
-- jobs from now on, and the other claims pass them by); idle workers wake.
WITH up AS (
    INSERT INTO soniq_queues AS q (name, concurrency, rate_limit, rate_period, burst)
    VALUES (%(name)s, %(concurrency)s::int, %(rate_limit)s::int, %(rate_period)s::float8,
            %(burst)s::int)
    ON CONFLICT (name) DO UPDATE
    SET concurrency = EXCLUDED.concurrency, rate_limit = EXCLUDED.rate_limit,
        rate_period = EXCLUDED.rate_period, burst = EXCLUDED.burst,
        control_version = nextval('soniq_control_seq'), updated_at = now()
    RETURNING name, concurrency, rate_limit, rate_period, burst, control_version,
              paused_at IS NOT NULL AND (paused_until IS NULL OR paused_until > now())
                  AS paused,
              paused_at, paused_until, paused_reason, paused_by
)
SELECT up.*, pg_notify('soniq_control', 'limits:' || up.name) IS NULL AS _control,
       pg_notify('soniq_new_job', up.name) IS NULL AS _woken
FROM up

-- name: queue_clear_limits
-- Drop a queue's own limits (its rate state too); true if it had some.
WITH cleared AS (
    UPDATE soniq_queues
    SET concurrency = NULL, rate_limit = NULL, rate_period = NULL, burst = 1,
        rate_tat = NULL, control_version = nextval('soniq_control_seq'), updated_at = now()
    WHERE name = %(name)s AND (concurrency IS NOT NULL OR rate_limit IS NOT NULL)
    RETURNING name
)
SELECT cleared.name,
       pg_notify('soniq_control', 'limits:' || cleared.name) IS NULL AS _control,
       pg_notify('soniq_new_job', cleared.name) IS NULL AS _woken
FROM cleared

-- name: queue_control
-- What a worker caches of the pauses and queue limits: the latest control version;
-- the queues paused now with the seconds each pause has left (NULL: until resumed);
-- the queues gated by limits of their own, read in one snapshot so the version
-- matches them; and whether the optional queue index (see claim_jobs_by_queue) is
-- there to claim by queue.
SELECT COALESCE(max(control_version), 0) AS version,
       COALESCE(array_agg(name) FILTER (WHERE in_force), '{}') AS names,
       COALESCE(array_agg(EXTRACT(EPOCH FROM paused_until - now())::float8)
                FILTER (WHERE in_force), '{}') AS remaining,
       COALESCE(array_agg(name) FILTER (WHERE gated), '{}') AS gated,
       EXISTS (SELECT FROM pg_index
               WHERE indexrelid = to_regclass('soniq_jobs_queue_claim_idx')
                 AND indisvalid) AS queue_index
FROM (SELECT name, control_version, paused_until,
             paused_at IS NOT NULL AND (paused_until IS NULL OR paused_until > now()) AS in_force,
             concurrency IS NOT NULL OR rate_limit IS NOT NULL AS gated
      FROM soniq_queues) q

-- name: queue_unconfirmed
-- The live workers (heartbeat within %(timeout)s seconds) that have not yet applied
-- control version %(version)s, for pause(wait=True).
SELECT id::text AS id, hostname, pid FROM soniq_workers
WHERE control_seen < %(version)s::bigint
  AND last_heartbeat > now() - make_interval(secs => %(timeout)s::float8)
ORDER BY hostname, pid

-- ---------------------------------------------------------------------------------
-- Limits (migration 0010; PostgreSQL only)
-- ---------------------------------------------------------------------------------

-- name: claim_limited
-- Claim up to %(limit)s limited jobs, round-robin over at most %(keys)s keys from
-- just after %(after)s, within each key's concurrency and rate (see the function, in
-- migration 0011 as it is now). The last row has id NULL: the next cursor and when to
-- look again.
SELECT * FROM soniq_claim_limited(%(worker_id)s::uuid, %(queues)s::text[], %(after)s::text,
                                  %(keys)s::int, %(limit)s::int)

-- name: claim_gated
-- Claim up to %(limit)s jobs of the gated queues (those with limits of their own)
-- among %(queues)s (NULL: all), each queue within its limits and each keyed job also
-- within its key's (see soniq_claim_gated in migration 0011). The last row has id
-- NULL: the keyed claims' next cursor, and when to look again.
SELECT * FROM soniq_claim_gated(%(worker_id)s::uuid, %(queues)s::text[], %(after)s::text,
                                %(keys)s::int, %(limit)s::int)

-- name: limited_waiting
-- Is any limited job due? One probe of soniq_jobs_limited_idx, which is empty unless
-- limits are in use; a worker whose own tasks declare no limit asks this at most once
-- per poll interval before it runs the limited claim.
SELECT EXISTS (SELECT FROM soniq_jobs
               WHERE status = 'queued' AND NOT delayed AND limit_key IS NOT NULL) AS found

-- name: limit_groups_declare
-- What a worker's code declares, one row per group, in name order (as every writer
-- of these rows takes them). An operator's runtime setting (source = 'runtime') is
-- kept: only what the code declares is noted, for clear() to go back to.
INSERT INTO soniq_limit_groups AS g
    (name, concurrency, rate_limit, rate_period, burst, declared)
SELECT d.name, d.concurrency, d.rate_limit, d.rate_period, d.burst,
       jsonb_build_object('concurrency', d.concurrency, 'rate_limit', d.rate_limit,
                          'rate_period', d.rate_period, 'burst', d.burst)
FROM unnest(%(names)s::text[], %(concurrency)s::int[], %(rate_limit)s::int[],
            %(rate_period)s::float8[], %(burst)s::int[])
     AS d(name, concurrency, rate_limit, rate_period, burst)
ORDER BY d.name
ON CONFLICT (name) DO UPDATE SET
    concurrency = CASE WHEN g.source = 'runtime' THEN g.concurrency ELSE EXCLUDED.concurrency END,
    rate_limit = CASE WHEN g.source = 'runtime' THEN g.rate_limit ELSE EXCLUDED.rate_limit END,
    rate_period = CASE WHEN g.source = 'runtime' THEN g.rate_period ELSE EXCLUDED.rate_period END,
    burst = CASE WHEN g.source = 'runtime' THEN g.burst ELSE EXCLUDED.burst END,
    declared = EXCLUDED.declared,
    updated_at = CASE WHEN g.declared IS DISTINCT FROM EXCLUDED.declared
                      OR g.source = 'code' AND (g.concurrency, g.rate_limit, g.rate_period, g.burst)
                         IS DISTINCT FROM (EXCLUDED.concurrency, EXCLUDED.rate_limit,
                                           EXCLUDED.rate_period, EXCLUDED.burst)
                      THEN now() ELSE g.updated_at END

-- name: limit_group_set
-- An operator's limits for a group; they win over the code's until cleared. Idle
-- workers are woken: a raised limit may let jobs start at once.
WITH up AS (
    INSERT INTO soniq_limit_groups AS g
        (name, concurrency, rate_limit, rate_period, burst, source)
    VALUES (%(name)s, %(concurrency)s::int, %(rate_limit)s::int, %(rate_period)s::float8,
            %(burst)s::int, 'runtime')
    ON CONFLICT (name) DO UPDATE SET
        concurrency = EXCLUDED.concurrency, rate_limit = EXCLUDED.rate_limit,
        rate_period = EXCLUDED.rate_period, burst = EXCLUDED.burst, source = 'runtime',
        updated_at = now()
    RETURNING name, concurrency, rate_limit, rate_period, burst, source, declared, updated_at
)
SELECT up.*, pg_notify('soniq_new_job', '*') IS NULL AS _woken FROM up

-- name: limit_group_clear
-- Drop an operator's limits: the group goes back to what the code declares (a group
-- no running code declares is removed; its jobs then run one at a time).
WITH back AS (
    UPDATE soniq_limit_groups
    SET concurrency = (declared->>'concurrency')::int,
        rate_limit = (declared->>'rate_limit')::int,
        rate_period = (declared->>'rate_period')::float8,
        burst = COALESCE((declared->>'burst')::int, 1),
        source = 'code', updated_at = now()
    WHERE name = %(name)s AND declared IS NOT NULL
    RETURNING name
), gone AS (
    DELETE FROM soniq_limit_groups WHERE name = %(name)s AND declared IS NULL RETURNING name
)
SELECT name, pg_notify('soniq_new_job', '*') IS NULL AS _woken
FROM (SELECT name FROM back UNION ALL SELECT name FROM gone) AS changed

-- name: limit_key_block
-- Hold a key back for %(seconds)s seconds, fleet-wide (RateLimited(retry_after), or
-- app.limits.block); an earlier block that lasts longer is kept.
INSERT INTO soniq_limit_keys AS k (key, blocked_until, touched_at)
VALUES (%(key)s, now() + make_interval(secs => %(seconds)s::float8), now())
ON CONFLICT (key) DO UPDATE SET
    blocked_until = GREATEST(k.blocked_until, EXCLUDED.blocked_until), touched_at = now()
RETURNING key, blocked_until

-- name: limit_key_unblock
WITH cleared AS (
    UPDATE soniq_limit_keys SET blocked_until = NULL, touched_at = now()
    WHERE key = %(key)s AND blocked_until > now()
    RETURNING key
)
SELECT key, pg_notify('soniq_new_job', '*') IS NULL AS _woken FROM cleared

-- name: _limited_live_rows
-- A fragment, not a query: one row per limited job queued (due or delayed) or
-- running, as (key, running, queued), each part read from its own partial index
-- (limited due, delayed, limited in flight), never from the finished rows.
SELECT limit_key, 0, 1 FROM soniq_jobs
WHERE status = 'queued' AND NOT delayed AND limit_key IS NOT NULL
UNION ALL
SELECT limit_key, 0, 1 FROM soniq_jobs
WHERE status = 'queued' AND delayed AND limit_key IS NOT NULL
UNION ALL
SELECT limit_key, 1, 0 FROM soniq_jobs
WHERE status = 'processing' AND limit_key IS NOT NULL

-- name: limit_list
-- Every group (declared, set, or with limited jobs queued or running) with its limits
-- and how many of its jobs run and wait now. Each count reads only its own partial
-- index's rows (limited due, delayed, limited in flight), never the finished rows:
-- app.status() runs this.
WITH live(key, running, queued) AS (
-- include: _limited_live_rows
), counts AS (
    SELECT split_part(key, ':', 1) AS name, sum(running)::int AS running,
           sum(queued)::int AS queued
    FROM live GROUP BY 1
)
SELECT COALESCE(g.name, c.name) AS name, g.concurrency, g.rate_limit, g.rate_period,
       COALESCE(g.burst, 1) AS burst, COALESCE(g.source, 'missing') AS source,
       g.declared, g.updated_at,
       COALESCE(c.running, 0) AS running, COALESCE(c.queued, 0) AS queued
FROM soniq_limit_groups AS g FULL JOIN counts AS c ON c.name = g.name
ORDER BY 1

-- name: limit_keys_top
-- The busiest keys: running and queued jobs, and any block or rate state. The counts
-- read the live rows only, as limit_list's do.
WITH live(key, running, queued) AS (
-- include: _limited_live_rows
), counts AS (
    SELECT key, sum(running)::int AS running, sum(queued)::int AS queued
    FROM live
    WHERE %(group)s::text IS NULL OR split_part(key, ':', 1) = %(group)s::text
    GROUP BY 1
), state AS (
    SELECT key, blocked_until, tat FROM soniq_limit_keys
    WHERE (%(group)s::text IS NULL OR split_part(key, ':', 1) = %(group)s::text)
      AND (blocked_until > now() OR tat > now())
)
SELECT COALESCE(c.key, s.key) AS key, split_part(COALESCE(c.key, s.key), ':', 1) AS "group",
       COALESCE(c.running, 0) AS running, COALESCE(c.queued, 0) AS queued,
       CASE WHEN s.blocked_until > now() THEN s.blocked_until END AS blocked_until
FROM counts AS c FULL JOIN state AS s ON s.key = c.key
ORDER BY COALESCE(c.running, 0) + COALESCE(c.queued, 0) DESC, 1
LIMIT %(limit)s::int

-- name: limit_keys_prune
-- Forget the state of keys idle for %(ttl)s seconds: no block in force, no rate debt
-- left, untouched since.
DELETE FROM soniq_limit_keys
WHERE touched_at < now() - make_interval(secs => %(ttl)s::float8)
  AND (blocked_until IS NULL OR blocked_until < now())
  AND (tat IS NULL OR tat < now())
