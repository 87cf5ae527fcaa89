-- Soniq schema, version 8: signed webhook delivery (soniq.webhooks, app.webhooks).
--
-- An endpoint is a URL that receives events; a delivery is one event for one endpoint,
-- carried by a soniq_jobs row of the reserved task soniq.webhooks.deliver. The delivery
-- row keeps what the receiver answered after the job row is pruned.

CREATE TABLE soniq_webhook_endpoints (
    id              text        PRIMARY KEY,
    url             text        NOT NULL,
    -- "plain:<secret>" or "fernet:<token>" (SONIQ_WEBHOOK_SECRET_KEY set); NULL: unsigned.
    secret          text,
    -- A JSON array of event names; NULL receives every event.
    events          jsonb,
    active          boolean     NOT NULL DEFAULT true,
    max_retries     integer     NOT NULL DEFAULT 3 CHECK (max_retries >= 0),
    timeout_seconds double precision NOT NULL DEFAULT 30 CHECK (timeout_seconds > 0),
    headers         jsonb       NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE soniq_webhook_deliveries (
    id              text        PRIMARY KEY,
    endpoint_id     text        NOT NULL
        REFERENCES soniq_webhook_endpoints (id) ON DELETE CASCADE,
    job_id          uuid,
    event           text        NOT NULL,
    -- The exact request body, so that every attempt sends (and signs) the same bytes.
    body            text        NOT NULL,
    status          text        NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        integer     NOT NULL DEFAULT 0,
    max_attempts    integer     NOT NULL,
    next_retry_at   timestamptz,
    last_error      text,
    response_status integer,
    -- At most 4096 characters of the last response's body.
    response_body   text,
    duration_ms     double precision,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz
);

CREATE INDEX soniq_webhook_deliveries_endpoint_idx
    ON soniq_webhook_deliveries (endpoint_id, created_at);
CREATE INDEX soniq_webhook_deliveries_created_idx
    ON soniq_webhook_deliveries (created_at);
