-- Soniq schema, version 11: limits of a whole queue (app.queues.set_limits).
--
-- A queue with limits of its own is gated: the other claims pass its jobs by (they
-- read the new columns of soniq_queues with the pauses), and soniq_claim_gated admits
-- them, keyed or not, within the queue's limits. The limited claim and its key walk
-- are replaced: the walk can keep to one queue, and the claim passes gated queues by
-- unless called for one of them (p_gate). Its wake-up time no longer counts a key that
-- is full by its concurrency, whose slot frees when a job ends.

-- A queue's own limits (app.queues.set_limits), on its row of soniq_queues (0009):
-- at most concurrency of its jobs running at once, and at most rate_limit + burst - 1
-- starts in any window of rate_period seconds, whatever their keys. A queue with
-- either limit is gated: the other claims pass its jobs by (they read these columns
-- with the pauses), and soniq_claim_gated admits them. rate_tat is the queue's GCRA
-- state, as soniq_limit_keys.tat is a key's.
ALTER TABLE soniq_queues
    ADD COLUMN concurrency integer CHECK (concurrency >= 0),
    ADD COLUMN rate_limit  integer CHECK (rate_limit > 0),
    ADD COLUMN rate_period float8  CHECK (rate_period > 0),
    ADD COLUMN burst       integer NOT NULL DEFAULT 1 CHECK (burst >= 1),
    ADD COLUMN rate_tat    timestamptz,
    ADD CONSTRAINT soniq_queues_rate_check CHECK ((rate_limit IS NULL) = (rate_period IS NULL));

DROP FUNCTION soniq_claim_limited(uuid, text[], text, integer, integer);
DROP FUNCTION soniq_limit_walk(text, text, integer);

-- Up to p_keys keys of due limited jobs after p_from, in key order, and no further
-- than p_until (NULL: to the end), of queue p_queue only unless it is NULL: a skip
-- scan of soniq_jobs_limited_idx, one index probe per key however many jobs each key
-- holds (with p_queue, a probe also steps over the keys of other queues, row by
-- row). PL/pgSQL, not SQL, so that its plan is cached for the session: a SQL function
-- called this way is planned at every call, which cost more than the walk itself.
CREATE FUNCTION soniq_limit_walk(p_from text, p_until text, p_keys integer, p_queue text)
RETURNS SETOF text LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY
    WITH RECURSIVE walk(k, n) AS (
        (SELECT j.limit_key, 1 FROM soniq_jobs AS j
         WHERE j.status = 'queued' AND NOT j.delayed AND j.limit_key IS NOT NULL
           AND j.limit_key > p_from AND (p_queue IS NULL OR j.queue = p_queue)
         ORDER BY j.limit_key LIMIT 1)
      UNION ALL
        SELECT (SELECT j.limit_key FROM soniq_jobs AS j
                WHERE j.status = 'queued' AND NOT j.delayed AND j.limit_key IS NOT NULL
                  AND j.limit_key > w.k AND (p_queue IS NULL OR j.queue = p_queue)
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
--
-- Jobs of paused queues and of gated ones (with limits of their own) are passed by.
-- p_gate names one gated queue whose keyed jobs to claim instead: soniq_claim_gated
-- calls it so, holding that queue's admission and giving at most its free slots.
CREATE FUNCTION soniq_claim_limited(p_worker uuid, p_queues text[], p_after text,
                                    p_keys integer, p_limit integer,
                                    p_gate text DEFAULT NULL)
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
    v_cand := ARRAY(SELECT soniq_limit_walk(COALESCE(p_after, ''), NULL, v_walk, p_gate));
    IF cardinality(v_cand) < v_walk AND p_after IS NOT NULL THEN
        v_cand := v_cand || ARRAY(
            SELECT soniq_limit_walk('', p_after, v_walk - cardinality(v_cand), p_gate));
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
                  AND CASE WHEN p_gate IS NOT NULL THEN j.queue = p_gate
                      ELSE COALESCE(j.queue <> ALL(ARRAY(
                          SELECT q.name FROM soniq_queues AS q
                          WHERE (q.paused_at IS NOT NULL
                                 AND (q.paused_until IS NULL OR q.paused_until > now()))
                             OR q.concurrency IS NOT NULL OR q.rate_limit IS NOT NULL)), true)
                      END
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
                -- job ends and wakes the workers): when the next start is allowed. A
                -- key also full by its concurrency waits for a job to end instead.
                WHEN a.rate_n = 0
                     AND a.running < CASE WHEN a.missing THEN 1
                                          ELSE COALESCE(a.concurrency, a.running + 1) END THEN
                    EXTRACT(EPOCH FROM a.tat - now()) - (a.burst - 1) * a.rate_period / a.rate_limit
            END)::float8 END FROM allow AS a),
           COALESCE((SELECT ch.key FROM chosen AS ch ORDER BY ch.ord DESC LIMIT 1), v_tried);
END
$$;


-- The claim of gated queues' jobs (those with limits of their own), keyed or not, in
-- one round trip, for the queues of p_queues (NULL: all) that are gated and not
-- paused, in a random order (so that one busy gated queue does not always go first).
-- Rows as soniq_claim_limited's, ending with its one row of id NULL (the cursor of
-- the keyed claims made here, and when a queue or key held back by its rate becomes
-- eligible).
--
-- Per queue, as per key: the queue's advisory lock is tried (a queue another claimer
-- is admitting is skipped), then a new statement counts its running jobs, so two
-- workers never both take its last slot. Its free slots go to its jobs without a key
-- and to its keyed jobs (each also within its key's limits) half and half, the first
-- half to either kind at random, and the second half to the other kind and whatever
-- the first left. The running count reads soniq_jobs_worker_idx: every running job
-- of the fleet, a few hundred rows, not the queue's backlog.
CREATE FUNCTION soniq_claim_gated(p_worker uuid, p_queues text[], p_after text,
                                  p_keys integer, p_limit integer)
RETURNS TABLE (id text, job_name text, args jsonb, queue text, priority integer,
               attempt integer, max_attempts integer, scheduled_at timestamptz,
               created_at timestamptz, headers jsonb, limit_key text,
               wake_in float8, cursor_key text)
LANGUAGE plpgsql VOLATILE SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
    v_queue text;
    v_q record;
    v_r record;
    v_left integer := p_limit;   -- slots this call may still fill
    v_n integer;                 -- slots the queue may fill now
    v_first integer;
    v_took integer;
    v_keyed_first boolean;
    v_pass integer;
    v_got integer;
    v_next float8;
    v_wake float8;
    v_cursor text := p_after;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'SONIQ_LIMITS_NEED_READ_COMMITTED: a limited claim needs READ '
            'COMMITTED (this transaction is %); under a snapshot that spans statements '
            'it would admit past the limit', current_setting('transaction_isolation')
            USING ERRCODE = 'P0001';
    END IF;
    FOR v_queue IN
        SELECT q.name FROM soniq_queues AS q
        WHERE (q.concurrency IS NOT NULL OR q.rate_limit IS NOT NULL)
          AND (p_queues IS NULL OR q.name = ANY(p_queues))
          AND NOT (q.paused_at IS NOT NULL AND (q.paused_until IS NULL OR q.paused_until > now()))
          AND NOT EXISTS (SELECT FROM soniq_queues AS a
                          WHERE a.name = '*' AND a.paused_at IS NOT NULL
                            AND (a.paused_until IS NULL OR a.paused_until > now()))
        ORDER BY random()
    LOOP
        EXIT WHEN v_left <= 0;
        CONTINUE WHEN NOT pg_try_advisory_xact_lock(hashtextextended('soniq.queue:' || v_queue, 0));
        -- A new statement, after the lock: every claim of the queue committed before it
        -- is counted.
        SELECT q.concurrency, q.rate_limit, q.rate_period, q.burst, q.rate_tat,
               (SELECT count(*) FROM soniq_jobs AS r  -- soniq_jobs_worker_idx
                WHERE r.worker_id IS NOT NULL AND r.status = 'processing'
                  AND r.queue = q.name)::int AS running,
               CASE WHEN q.rate_limit IS NULL THEN v_left
                    ELSE soniq_gcra_allowance(q.rate_tat, q.rate_limit, q.rate_period,
                                              q.burst, now()) END AS rate_n
        INTO v_q
        FROM soniq_queues AS q
        WHERE q.name = v_queue AND (q.concurrency IS NOT NULL OR q.rate_limit IS NOT NULL);
        CONTINUE WHEN NOT FOUND;  -- its limits were cleared meanwhile: the other claims'
        IF v_q.rate_n = 0 AND v_q.running < COALESCE(v_q.concurrency, v_q.running + 1) THEN
            v_wake := LEAST(v_wake, EXTRACT(EPOCH FROM v_q.rate_tat - now())
                                    - (v_q.burst - 1) * v_q.rate_period / v_q.rate_limit);
        END IF;
        v_n := LEAST(v_left, v_q.rate_n,
                     CASE WHEN v_q.concurrency IS NULL THEN v_left
                          ELSE GREATEST(0, v_q.concurrency - v_q.running) END);
        CONTINUE WHEN v_n <= 0;
        v_first := v_n - v_n / 2;
        v_keyed_first := random() < 0.5;
        v_took := 0;
        FOR v_pass IN 1..2 LOOP
            EXIT WHEN v_took >= v_n;
            IF v_keyed_first = (v_pass = 1) THEN
                FOR v_r IN
                    SELECT * FROM soniq_claim_limited(
                        p_worker, ARRAY[v_queue], v_cursor, p_keys,
                        CASE WHEN v_pass = 1 THEN v_first ELSE v_n - v_took END, v_queue)
                LOOP
                    IF v_r.id IS NULL THEN
                        v_cursor := COALESCE(v_r.cursor_key, v_cursor);
                        v_wake := LEAST(v_wake, v_r.wake_in);
                        CONTINUE;
                    END IF;
                    id := v_r.id; job_name := v_r.job_name; args := v_r.args;
                    queue := v_r.queue; priority := v_r.priority; attempt := v_r.attempt;
                    max_attempts := v_r.max_attempts; scheduled_at := v_r.scheduled_at;
                    created_at := v_r.created_at; headers := v_r.headers;
                    limit_key := v_r.limit_key; wake_in := NULL; cursor_key := NULL;
                    v_took := v_took + 1;
                    RETURN NEXT;
                END LOOP;
            ELSE
                RETURN QUERY
                UPDATE soniq_jobs AS j
                SET status = 'processing', attempts = j.attempts + 1, worker_id = p_worker,
                    started_at = now(), updated_at = now()
                WHERE j.id = ANY(ARRAY(
                    SELECT c.id FROM soniq_jobs AS c
                    WHERE c.status = 'queued' AND NOT c.delayed AND c.limit_key IS NULL
                      AND c.scheduled_at <= now() AND c.queue = v_queue
                    ORDER BY c.priority, c.scheduled_at, c.id
                    LIMIT CASE WHEN v_pass = 1 THEN v_first ELSE v_n - v_took END
                    FOR UPDATE SKIP LOCKED))
                RETURNING j.id::text, j.job_name, j.args, j.queue, j.priority, j.attempts,
                          j.max_attempts, j.scheduled_at, j.created_at, j.headers,
                          NULL::text, NULL::float8, NULL::text;
                GET DIAGNOSTICS v_got = ROW_COUNT;
                v_took := v_took + v_got;
            END IF;
        END LOOP;
        v_left := v_left - v_took;
        IF v_took > 0 AND v_q.rate_limit IS NOT NULL THEN
            UPDATE soniq_queues AS q
            SET rate_tat = GREATEST(COALESCE(q.rate_tat, now()), now())
                           + make_interval(secs => v_took * q.rate_period / q.rate_limit)
            WHERE q.name = v_queue
            RETURNING EXTRACT(EPOCH FROM q.rate_tat - now())
                      - (q.burst - 1) * q.rate_period / q.rate_limit INTO v_next;
            IF v_next > 0 THEN  -- its rate is spent for now: when it allows the next start
                v_wake := LEAST(v_wake, v_next);
            END IF;
        END IF;
    END LOOP;
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::jsonb, NULL::text, NULL::int,
                        NULL::int, NULL::int, NULL::timestamptz, NULL::timestamptz,
                        NULL::jsonb, NULL::text, v_wake, v_cursor;
END
$$;
