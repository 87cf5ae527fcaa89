-- Soniq schema for SQLite, version 5: the PostgreSQL schema's migration 0007 (the
-- fleet's task registry), in SQLite's types.

CREATE TABLE soniq_task_registry (
    task_name       TEXT NOT NULL,
    worker_id       TEXT NOT NULL,
    last_seen_at    REAL NOT NULL,
    args_model_repr TEXT,
    queue           TEXT,
    worker_queues   TEXT,  -- a JSON array; NULL means every queue
    args_schema     TEXT,  -- JSON
    hostname        TEXT,
    PRIMARY KEY (task_name, worker_id)
) STRICT;

CREATE INDEX soniq_task_registry_task_name_idx ON soniq_task_registry (task_name);
CREATE INDEX soniq_task_registry_last_seen_idx ON soniq_task_registry (last_seen_at);
