-- Soniq schema, version 7: the fleet's task registry.

-- Each worker writes the tasks it serves here when it starts and every
-- SONIQ_TASK_REGISTRY_INTERVAL seconds after: one row per (task, worker). It is for
-- observability only (`soniq tasks-check` compares a stub package's TaskRefs with it);
-- enqueue never reads it, and a failed write is logged and never stops a worker.
-- task_name, worker_id, last_seen_at and args_model_repr are the original Soniq's
-- columns; the others are Soniq's own.
CREATE TABLE soniq_task_registry (
    task_name       text        NOT NULL,
    worker_id       text        NOT NULL,
    last_seen_at    timestamptz NOT NULL DEFAULT now(),
    -- The args model's dotted name ("billing.schemas.InvoiceArgs"); NULL without one.
    args_model_repr text,
    -- The queue the handler was registered with (@app.job(queue=...)); NULL when it
    -- takes the enqueuer's (a TaskRef's default_queue, else "default").
    queue           text,
    -- The queues the worker claims from; NULL means every queue.
    worker_queues   text[],
    -- The args model's JSON schema (pydantic's model_json_schema()); NULL without one.
    args_schema     jsonb,
    hostname        text,
    PRIMARY KEY (task_name, worker_id)
);

CREATE INDEX soniq_task_registry_task_name_idx ON soniq_task_registry (task_name);
CREATE INDEX soniq_task_registry_last_seen_idx ON soniq_task_registry (last_seen_at);
