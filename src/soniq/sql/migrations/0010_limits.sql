-- Soniq schema, version 10: concurrency and rate limits per key, fleet-wide.

-- A limited job carries its key, '<group>' or '<group>:<value>' (see
-- soniq.core.limits). NULL, every existing row and every job of a task without
-- limits, is not limited: such rows stay in soniq_jobs_claim_idx, which limited rows
-- leave for an index of their own, so a backlog of limited jobs never stands in front
-- of unlimited ones (the global claim walks only its own index).
ALTER TABLE soniq_jobs ADD COLUMN limit_key text;
ALTER TABLE soniq_dead_letter_jobs ADD COLUMN limit_key text;

DROP INDEX soniq_jobs_claim_idx;

CREATE INDEX soniq_jobs_claim_idx
    ON soniq_jobs (priority, scheduled_at, id)
    WHERE status = 'queued' AND NOT delayed AND limit_key IS NULL;

-- The limited claim's queue: due limited jobs by key, then in claim order within it.
CREATE INDEX soniq_jobs_limited_idx
    ON soniq_jobs (limit_key, priority, scheduled_at, id)
    WHERE status = 'queued' AND NOT delayed AND limit_key IS NOT NULL;

-- Occupancy: a key's running jobs are its processing rows, counted from this index.
-- There is no counter to drift or to release twice; a row leaves the count by leaving
-- 'processing' (done, retried, snoozed, dead-lettered, cancelled, recovered).
CREATE INDEX soniq_jobs_limited_running_idx
    ON soniq_jobs (limit_key)
    WHERE status = 'processing' AND limit_key IS NOT NULL;

-- One row per limit group (a task's name, or the group= several tasks share). Workers
-- write what their code declares into declared and, unless an operator set the limits
-- at runtime (source = 'runtime', app.limits.set), into the columns the claim reads.
-- concurrency NULL: no concurrency limit; 0: hold every job of the group.
CREATE TABLE soniq_limit_groups (
    name        text        PRIMARY KEY CHECK (name <> '' AND strpos(name, ':') = 0),
    concurrency integer     CHECK (concurrency >= 0),
    rate_limit  integer     CHECK (rate_limit > 0),
    rate_period float8      CHECK (rate_period > 0),
    burst       integer     NOT NULL DEFAULT 1 CHECK (burst >= 1),
    source      text        NOT NULL DEFAULT 'code' CHECK (source IN ('code', 'runtime')),
    declared    jsonb,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((rate_limit IS NULL) = (rate_period IS NULL))
);

-- Per-key state, written only for keys that have some: the rate limit's theoretical
-- arrival time (GCRA) and a block (RateLimited(retry_after), app.limits.block).
-- Concurrency needs no row. Idle rows are pruned after SONIQ_LIMIT_KEY_IDLE_TTL.
CREATE TABLE soniq_limit_keys (
    key           text        PRIMARY KEY,
    tat           timestamptz,
    blocked_until timestamptz,
    touched_at    timestamptz NOT NULL DEFAULT now()
);

-- How many more starts a rate limit allows now (GCRA): at most limit + burst - 1 in
-- any window of period seconds, one every period/limit seconds once the burst is spent.
-- The state is one timestamp, and the database clock is the only clock.
CREATE FUNCTION soniq_gcra_allowance(p_tat timestamptz, p_limit integer, p_period float8,
                                     p_burst integer, p_now timestamptz)
RETURNS integer LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN base > p_now + tau THEN 0
        ELSE floor(EXTRACT(EPOCH FROM p_now + tau - base) / step)::int + 1
    END
    FROM (SELECT GREATEST(COALESCE(p_tat, p_now), p_now) AS base,
                 p_period / p_limit AS step,
                 make_interval(secs => (p_burst - 1) * p_period / p_limit) AS tau) AS g
$$;

-- Up to p_keys keys of due limited jobs after p_from, in key order, and no further
-- than p_until (NULL: to the end): a skip scan of soniq_jobs_limited_idx, one index
-- probe per key however many jobs each key holds. PL/pgSQL, not SQL, so that its plan
-- is cached for the session: a SQL function called this way is planned at every call,
-- which cost more than the walk itself.
CREATE FUNCTION soniq_limit_walk(p_from text, p_until text, p_keys integer)
RETURNS SETOF text LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY
    WITH RECURSIVE walk(k, n) AS (
        (SELECT j.limit_key, 1 FROM soniq_jobs AS j
         WHERE j.status = 'queued' AND NOT j.delayed AND j.limit_key IS NOT NULL
           AND j.limit_key > p_from
         ORDER BY j.limit_key LIMIT 1)
      UNION ALL
        SELECT (SELECT j.limit_key FROM soniq_jobs AS j
                WHERE j.status = 'queued' AND NOT j.delayed AND j.limit_key IS NOT NULL
                  AND j.limit_key > w.k
                ORDER BY j.limit_key LIMIT 1), w.n + 1
        FROM walk AS w
        WHERE w.k IS NOT NULL AND w.n < p_keys AND (p_until IS NULL OR w.k < p_until)
    )
    SELECT w.k FROM walk AS w
    WHERE w.k IS NOT NULL AND (p_until IS NULL OR w.k <= p_until) ORDER BY w.n;
END
$$;

-- The limited claim, in one round trip. It returns the claimed jobs, then one row
-- with id NULL that tells the worker where its round-robin cursor goes next and in how
-- many seconds a key held back by its rate or a block becomes eligible (NULL: none).
--
-- Why two workers can never both take a key's last slot: (1) takes each candidate
-- key's advisory lock (a try: a key another claimer is admitting is skipped, never
-- waited for), and (2) is a new statement, so under READ COMMITTED it sees every
-- claim committed before the locks were granted; the locks are held until this
-- transaction commits its own claims. Under REPEATABLE READ or SERIALIZABLE (2) would
-- see the transaction's first snapshot and over-admit, so the function refuses.
CREATE FUNCTION soniq_claim_limited(p_worker uuid, p_queues text[], p_after text,
                                    p_keys integer, p_limit integer)
RETURNS TABLE (id text, job_name text, args jsonb, queue text, priority integer,
               attempt integer, max_attempts integer, scheduled_at timestamptz,
               created_at timestamptz, headers jsonb, limit_key text,
               wake_in float8, cursor_key text)
-- A generic plan: planning the statements below anew at each call costs more than
-- running them.
LANGUAGE plpgsql VOLATILE SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
    v_walk integer := LEAST(p_keys, GREATEST(2 * p_limit, 8));  -- keys worth a look
    v_cand text[];
    v_keys text[];
    v_tried text;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'SONIQ_LIMITS_NEED_READ_COMMITTED: a limited claim needs READ '
            'COMMITTED (this transaction is %); under a snapshot that spans statements '
            'it would admit past the limit', current_setting('transaction_isolation')
            USING ERRCODE = 'P0001';
    END IF;
    -- (1) Candidate keys: from just after the cursor, then from the first key round
    -- to the cursor, each key locked if nobody else holds it.
    v_cand := ARRAY(SELECT soniq_limit_walk(COALESCE(p_after, ''), NULL, v_walk));
    IF cardinality(v_cand) < v_walk AND p_after IS NOT NULL THEN
        v_cand := v_cand || ARRAY(
            SELECT soniq_limit_walk('', p_after, v_walk - cardinality(v_cand)));
    END IF;
    v_tried := v_cand[cardinality(v_cand)];
    SELECT array_agg(k ORDER BY ord) INTO v_keys
    FROM unnest(v_cand) WITH ORDINALITY AS c(k, ord)
    WHERE pg_try_advisory_xact_lock(hashtextextended('soniq.limit:' || k, 0));
    IF v_keys IS NULL THEN
        RETURN QUERY SELECT NULL::text, NULL::text, NULL::jsonb, NULL::text, NULL::int,
                            NULL::int, NULL::int, NULL::timestamptz, NULL::timestamptz,
                            NULL::jsonb, NULL::text, NULL::float8, v_tried;
        RETURN;
    END IF;
    -- (2) Count, pick and claim, in a snapshot taken after every lock above.
    RETURN QUERY
    WITH cfg AS (
        SELECT c.k AS key, c.ord, g.name IS NULL AS missing, g.concurrency, g.rate_limit,
               g.rate_period, g.burst, lk.tat, lk.blocked_until,
               (SELECT count(*) FROM soniq_jobs AS r  -- soniq_jobs_limited_running_idx
                WHERE r.limit_key = c.k AND r.status = 'processing')::int AS running
        FROM unnest(v_keys) WITH ORDINALITY AS c(k, ord)
        LEFT JOIN soniq_limit_groups AS g ON g.name = split_part(c.k, ':', 1)
        LEFT JOIN soniq_limit_keys AS lk ON lk.key = c.k
    ), rated AS (
        SELECT cfg.*,
               CASE WHEN cfg.rate_limit IS NULL OR cfg.missing THEN p_limit
                    ELSE soniq_gcra_allowance(cfg.tat, cfg.rate_limit, cfg.rate_period,
                                              cfg.burst, now()) END AS rate_n
        FROM cfg
    ), allow AS (
        SELECT rated.*, LEAST(
            p_limit,
            rated.rate_n,
            CASE WHEN rated.blocked_until > now() THEN 0 ELSE p_limit END,
            CASE WHEN rated.missing THEN GREATEST(0, 1 - rated.running)  -- no group: 1
                 WHEN rated.concurrency IS NULL THEN p_limit
                 ELSE GREATEST(0, rated.concurrency - rated.running) END
        ) AS n
        FROM rated
    ), spread AS (
        -- Each eligible key's share of the claim: rows locked and not claimed would
        -- only hold other workers back.
        SELECT CEIL(p_limit::numeric / GREATEST(1, count(*) FILTER (WHERE allow.n > 0)))::int
                   AS cap
        FROM allow
    ), picked AS (
        SELECT p.id, a.key, a.ord, p.rn, LEAST(a.n, s.cap) AS took_at_most
        FROM allow AS a
        CROSS JOIN spread AS s
        CROSS JOIN LATERAL (
            SELECT j.id, row_number() OVER (ORDER BY j.priority, j.scheduled_at, j.id) AS rn
            FROM (
                SELECT j.id, j.priority, j.scheduled_at FROM soniq_jobs AS j
                WHERE j.status = 'queued' AND NOT j.delayed AND j.limit_key = a.key
                  AND j.scheduled_at <= now()
                  AND (p_queues IS NULL OR j.queue = ANY(p_queues))
                  AND COALESCE(j.queue <> ALL(ARRAY(
                          SELECT q.name FROM soniq_queues AS q
                          WHERE q.paused_at IS NOT NULL
                            AND (q.paused_until IS NULL OR q.paused_until > now()))), true)
                  AND NOT EXISTS (SELECT FROM soniq_queues AS q
                                  WHERE q.name = '*' AND q.paused_at IS NOT NULL
                                    AND (q.paused_until IS NULL OR q.paused_until > now()))
                ORDER BY j.priority, j.scheduled_at, j.id
                LIMIT LEAST(a.n, s.cap)
                FOR UPDATE SKIP LOCKED) AS j
        ) AS p
        WHERE a.n > 0
    ), chosen AS (
        SELECT picked.id, picked.key, picked.ord FROM picked
        ORDER BY picked.rn, picked.ord  -- one job per key in turn, then the next round
        LIMIT p_limit
    ), claimed AS (
        UPDATE soniq_jobs AS j
        SET status = 'processing', attempts = j.attempts + 1, worker_id = p_worker,
            started_at = now(), updated_at = now()
        WHERE j.id = ANY(ARRAY(SELECT chosen.id FROM chosen))
        RETURNING j.id, j.job_name, j.args, j.queue, j.priority, j.attempts,
                  j.max_attempts, j.scheduled_at, j.created_at, j.headers, j.limit_key
    ), spent AS (
        -- Advance each rate-limited key's GCRA state by the starts it was given.
        INSERT INTO soniq_limit_keys AS lk (key, tat, touched_at)
        SELECT a.key,
               GREATEST(COALESCE(a.tat, now()), now())
                   + make_interval(secs => c.n * a.rate_period / a.rate_limit),
               now()
        FROM allow AS a
        JOIN (SELECT claimed.limit_key, count(*) AS n FROM claimed GROUP BY 1) AS c
          ON c.limit_key = a.key
        WHERE a.rate_limit IS NOT NULL AND NOT a.missing
        ORDER BY a.key
        ON CONFLICT (key) DO UPDATE SET tat = EXCLUDED.tat, touched_at = now()
    )
    SELECT c.id::text, c.job_name, c.args, c.queue, c.priority, c.attempts, c.max_attempts,
           c.scheduled_at, c.created_at, c.headers, c.limit_key, NULL::float8, NULL::text
    FROM claimed AS c
    UNION ALL
    SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           (SELECT CASE
                -- A key that gave its whole share may have more to give: look again now.
                WHEN EXISTS (SELECT FROM picked AS pk JOIN allow AS a ON a.key = pk.key
                             WHERE pk.rn = pk.took_at_most AND pk.took_at_most < a.n)
                THEN 0::float8
                ELSE min(CASE
                WHEN a.blocked_until > now() THEN EXTRACT(EPOCH FROM a.blocked_until - now())
                -- Held back by its rate (not by its concurrency, which frees up when a
                -- job ends and wakes the workers): when the next start is allowed.
                WHEN a.rate_n = 0 THEN
                    EXTRACT(EPOCH FROM a.tat - now()) - (a.burst - 1) * a.rate_period / a.rate_limit
            END)::float8 END FROM allow AS a),
           COALESCE((SELECT ch.key FROM chosen AS ch ORDER BY ch.ord DESC LIMIT 1), v_tried);
END
$$;
