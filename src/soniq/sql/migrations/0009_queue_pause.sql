-- Soniq schema, version 9: queues paused across the whole fleet.

-- One row per queue that was ever paused ('*': every queue). A queue is paused while
-- paused_at is set and paused_until is NULL or still to come, so a pause with an end
-- lifts itself at that time with no process acting. The claim reads this table in
-- the same statement that takes jobs (claim_jobs), so every claim that starts after a
-- pause commits skips the queue, on every worker, whether it heard the notification
-- or not, and a worker started later never claims it.
-- Every pause and resume takes a new control_version from soniq_control_seq. A worker
-- that has seen a version (and given back the jobs it had claimed but not started of
-- the queues paused by then) writes it to soniq_workers.control_seen, which is what
-- pause(wait=True) waits for.
CREATE SEQUENCE soniq_control_seq;

CREATE TABLE soniq_queues (
    name            text        PRIMARY KEY,
    paused_at       timestamptz,
    paused_until    timestamptz,
    paused_reason   text,
    paused_by       text,
    control_version bigint      NOT NULL DEFAULT nextval('soniq_control_seq'),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE soniq_workers ADD COLUMN control_seen bigint NOT NULL DEFAULT 0;
