"""SoniqSettings: defaults, SONIQ_* variables, keyword overrides and every rejection."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from soniq import Soniq, SoniqError
from soniq.errors import INVALID_SETTING
from soniq.settings import DEFAULT_TASK_NAME_PATTERN, SoniqSettings


def load(environ: dict[str, str] | None = None, **overrides: Any) -> SoniqSettings:
    return SoniqSettings.load(environ={} if environ is None else environ, **overrides)


def test_defaults_match_the_spec() -> None:
    s = load()
    assert s.concurrency == 4
    assert s.poll_interval == 5.0
    assert s.heartbeat_interval == 5.0
    assert s.heartbeat_timeout == 300.0
    assert s.cleanup_interval == 300.0
    assert s.task_registry_interval == 60.0
    assert s.error_retry_delay == 5.0
    assert s.job_timeout == 300.0
    assert s.enqueue_validation == "strict"
    assert s.jobs_modules == ()
    assert s.queues == ("default",)
    assert s.max_retries == 3
    assert s.priority == 100
    assert s.database_url is None
    assert s.task_name_pattern == DEFAULT_TASK_NAME_PATTERN


# (variable, field, raw value, parsed value); every raw value differs from the default.
ENV_CASES = [
    ("SONIQ_DATABASE_URL", "database_url", "postgresql://db/app", "postgresql://db/app"),
    ("SONIQ_JOBS_MODULES", "jobs_modules", "app.jobs", ("app.jobs",)),
    ("SONIQ_CONCURRENCY", "concurrency", "8", 8),
    ("SONIQ_MAX_RETRIES", "max_retries", "0", 0),
    ("SONIQ_PRIORITY", "priority", "7", 7),
    ("SONIQ_QUEUES", "queues", "high", ("high",)),
    ("SONIQ_JOB_TIMEOUT", "job_timeout", "12.5", 12.5),
    ("SONIQ_RESULT_TTL", "result_ttl", "0", 0.0),
    ("SONIQ_FINISHED_JOB_RETENTION", "finished_job_retention", "600", 600.0),
    ("SONIQ_PRUNE_INTERVAL", "prune_interval", "0", 0.0),
    ("SONIQ_POLL_INTERVAL", "poll_interval", "0.25", 0.25),
    ("SONIQ_HEARTBEAT_INTERVAL", "heartbeat_interval", "2", 2.0),
    ("SONIQ_HEARTBEAT_TIMEOUT", "heartbeat_timeout", "60", 60.0),
    ("SONIQ_CLEANUP_INTERVAL", "cleanup_interval", "30", 30.0),
    ("SONIQ_TASK_REGISTRY_INTERVAL", "task_registry_interval", "15", 15.0),
    ("SONIQ_ERROR_RETRY_DELAY", "error_retry_delay", "0.25", 0.25),
    ("SONIQ_SHUTDOWN_TIMEOUT", "shutdown_timeout", "10", 10.0),
    ("SONIQ_ENQUEUE_VALIDATION", "enqueue_validation", " WARN ", "warn"),
    ("SONIQ_TASK_NAME_PATTERN", "task_name_pattern", r"^[a-z]+$", r"^[a-z]+$"),
    ("SONIQ_POOL_MIN_SIZE", "pool_min_size", "2", 2),
    ("SONIQ_POOL_MAX_SIZE", "pool_max_size", "20", 20),
    ("SONIQ_CONNECT_TIMEOUT", "connect_timeout", "3", 3.0),
    ("SONIQ_LOG_LEVEL", "log_level", "DEBUG", "DEBUG"),
    ("SONIQ_LISTEN_NOTIFY", "listen_notify", "false", False),
    ("SONIQ_SCHEDULER_POLL_INTERVAL", "scheduler_poll_interval", "0.5", 0.5),
    ("SONIQ_SCHEDULER_MISFIRE_GRACE", "scheduler_misfire_grace", "0", 0.0),
    ("SONIQ_METRICS", "metrics", "true", True),
    ("SONIQ_METRICS_PORT", "metrics_port", "9100", 9100),
    ("SONIQ_METRICS_HOST", "metrics_host", " 127.0.0.1 ", "127.0.0.1"),
    ("SONIQ_METRICS_INTERVAL", "metrics_interval", "0.5", 0.5),
    ("SONIQ_TRACING", "tracing", "OFF", "off"),
    ("SONIQ_LOG_FORMAT", "log_format", "Json", "json"),
    ("SONIQ_PLUGINS", "plugins", "audit, extra", ("audit", "extra")),
    ("SONIQ_BACKEND", "backend", " Memory ", "memory"),
    ("SONIQ_SNOOZE_MAX_SECONDS", "snooze_max_seconds", "3600", 3600.0),
    ("SONIQ_LIMIT_KEYS_PER_CLAIM", "limit_keys_per_claim", "16", 16),
    ("SONIQ_LIMIT_KEY_IDLE_TTL", "limit_key_idle_ttl", "60", 60.0),
    ("SONIQ_HANDLER_POOL_MAX_SIZE", "handler_pool_max_size", "12", 12),
    ("SONIQ_HANDLER_TX_IDLE_TIMEOUT", "handler_tx_idle_timeout", "90", 90.0),
    ("SONIQ_PROGRESS_INTERVAL", "progress_interval", "0.25", 0.25),
    ("SONIQ_WAIT_POLL", "wait_poll", "5", 5.0),
    ("SONIQ_PRODUCER_ID", "producer_id", " api-1 ", "api-1"),
    ("SONIQ_WEBHOOK_SECRET_KEY", "webhook_secret_key", "k1,k2", SecretStr("k1,k2")),
    ("SONIQ_WEBHOOK_TIMEOUT", "webhook_timeout", "5", 5.0),
    ("SONIQ_WEBHOOK_RETRY_DELAY", "webhook_retry_delay", "0.5", 0.5),
    ("SONIQ_WEBHOOK_RETRY_MAX_DELAY", "webhook_retry_max_delay", "30", 30.0),
    ("SONIQ_WEBHOOK_QUEUE", "webhook_queue", " webhooks ", "webhooks"),
]


def test_env_cases_cover_every_setting() -> None:
    assert {field for _, field, _, _ in ENV_CASES} == set(SoniqSettings.model_fields)


@pytest.mark.parametrize(("var", "field", "raw", "expected"), ENV_CASES, ids=lambda v: str(v))
def test_each_env_var_is_read(var: str, field: str, raw: str, expected: object) -> None:
    assert getattr(load({var: raw}), field) == expected


def test_blank_env_var_means_default() -> None:
    assert load({"SONIQ_CONCURRENCY": "  "}).concurrency == 4


def test_keyword_beats_env() -> None:
    s = load({"SONIQ_CONCURRENCY": "8", "SONIQ_QUEUES": "a,b"}, concurrency=2, queues=["c"])
    assert (s.concurrency, s.queues) == (2, ("c",))


def test_keyword_wins_even_over_an_invalid_env_value() -> None:
    assert load({"SONIQ_CONCURRENCY": "lots"}, concurrency=2).concurrency == 2


def test_worker_concurrency_alias() -> None:
    assert load({"SONIQ_WORKER_CONCURRENCY": "7"}).concurrency == 7
    both = {"SONIQ_CONCURRENCY": "3", "SONIQ_WORKER_CONCURRENCY": "7"}
    assert load(both).concurrency == 3


@pytest.mark.parametrize("var", ["SONIQ_JOBS_MODULES", "SONIQ_QUEUES"])
def test_comma_lists(var: str) -> None:
    field = var.removeprefix("SONIQ_").lower()
    assert getattr(load({var: " a.b , c,, d ,"}), field) == ("a.b", "c", "d")
    assert getattr(load(**{field: "x,y"}), field) == ("x", "y")


@pytest.mark.parametrize(
    ("environ", "overrides"),
    [
        ({"SONIQ_HEARTBEAT_INTERVAL": "0.5", "SONIQ_HEARTBEAT_TIMEOUT": "3"}, {}),
        ({}, {"heartbeat_interval": 0.5, "heartbeat_timeout": 3}),
    ],
)
def test_small_heartbeat_timings_accepted(
    environ: dict[str, str], overrides: dict[str, Any]
) -> None:
    s = load(environ, **overrides)
    assert (s.heartbeat_interval, s.heartbeat_timeout) == (0.5, 3.0)


@pytest.mark.parametrize(
    ("environ", "overrides"),
    [({"SONIQ_JOB_TIMEOUT": "0"}, {}), ({}, {"job_timeout": 0}), ({}, {"job_timeout": 0.0})],
)
def test_job_timeout_zero_disables(environ: dict[str, str], overrides: dict[str, Any]) -> None:
    assert load(environ, **overrides).job_timeout is None


def test_retention_defaults() -> None:
    s = load()
    assert (s.result_ttl, s.finished_job_retention, s.prune_interval) == (300.0, 3600.0, 60.0)


@pytest.mark.parametrize(
    ("environ", "overrides"),
    [
        ({"SONIQ_FINISHED_JOB_RETENTION": "off"}, {}),
        ({"SONIQ_FINISHED_JOB_RETENTION": " Never "}, {}),
        ({"SONIQ_FINISHED_JOB_RETENTION": "none"}, {}),
        ({}, {"finished_job_retention": None}),
        ({}, {"finished_job_retention": "OFF"}),
    ],
)
def test_retention_off_keeps_finished_jobs(
    environ: dict[str, str], overrides: dict[str, Any]
) -> None:
    assert load(environ, **overrides).finished_job_retention is None


REJECTIONS = [
    ({"SONIQ_POLL_INTERVAL": "0"}, {}, "SONIQ_POLL_INTERVAL"),
    ({"SONIQ_POLL_INTERVAL": "-1"}, {}, "SONIQ_POLL_INTERVAL"),
    ({"SONIQ_POLL_INTERVAL": "nan"}, {}, "SONIQ_POLL_INTERVAL"),
    ({"SONIQ_HEARTBEAT_INTERVAL": "0"}, {}, "SONIQ_HEARTBEAT_INTERVAL"),
    ({"SONIQ_HEARTBEAT_TIMEOUT": "-5"}, {}, "SONIQ_HEARTBEAT_TIMEOUT"),
    ({"SONIQ_CLEANUP_INTERVAL": "0"}, {}, "SONIQ_CLEANUP_INTERVAL"),
    ({"SONIQ_TASK_REGISTRY_INTERVAL": "0"}, {}, "SONIQ_TASK_REGISTRY_INTERVAL"),
    ({"SONIQ_CONNECT_TIMEOUT": "-1"}, {}, "SONIQ_CONNECT_TIMEOUT"),
    ({"SONIQ_ERROR_RETRY_DELAY": "-1"}, {}, "SONIQ_ERROR_RETRY_DELAY"),
    ({"SONIQ_ERROR_RETRY_DELAY": "0"}, {}, "SONIQ_ERROR_RETRY_DELAY"),  # a busy loop in outages
    ({"SONIQ_RESULT_TTL": "-1"}, {}, "SONIQ_RESULT_TTL"),
    ({"SONIQ_JOB_TIMEOUT": "-1"}, {}, "SONIQ_JOB_TIMEOUT"),
    ({"SONIQ_CONCURRENCY": "0"}, {}, "SONIQ_CONCURRENCY"),
    ({"SONIQ_MAX_RETRIES": "-1"}, {}, "SONIQ_MAX_RETRIES"),
    ({"SONIQ_HEARTBEAT_TIMEOUT": "4"}, {}, "SONIQ_HEARTBEAT_TIMEOUT"),  # <= interval 5
    (
        {"SONIQ_HEARTBEAT_INTERVAL": "10", "SONIQ_HEARTBEAT_TIMEOUT": "10"},
        {},
        "SONIQ_HEARTBEAT_TIMEOUT",
    ),
    ({"SONIQ_ENQUEUE_VALIDATION": "loud"}, {}, "SONIQ_ENQUEUE_VALIDATION"),
    ({"SONIQ_CONCURRENCY": "four"}, {}, "SONIQ_CONCURRENCY"),
    ({"SONIQ_CONCURRENCY": "2.5"}, {}, "SONIQ_CONCURRENCY"),
    ({"SONIQ_POLL_INTERVAL": "soon"}, {}, "SONIQ_POLL_INTERVAL"),
    ({"SONIQ_TASK_NAME_PATTERN": "[unclosed"}, {}, "SONIQ_TASK_NAME_PATTERN"),
    ({"SONIQ_POOL_MIN_SIZE": "5", "SONIQ_POOL_MAX_SIZE": "2"}, {}, "SONIQ_POOL_MAX_SIZE"),
    ({"SONIQ_PRIORITY": "0"}, {}, "SONIQ_PRIORITY"),
    ({"SONIQ_PRIORITY": "1001"}, {}, "SONIQ_PRIORITY"),
    ({}, {"poll_interval": 0}, "SONIQ_POLL_INTERVAL"),
    ({}, {"heartbeat_interval": 2, "heartbeat_timeout": 1}, "SONIQ_HEARTBEAT_TIMEOUT"),
    ({}, {"enqueue_validation": "sometimes"}, "SONIQ_ENQUEUE_VALIDATION"),
    ({}, {"priority": 1001}, "SONIQ_PRIORITY"),
    ({}, {"pool_min_size": 3, "pool_max_size": 1}, "SONIQ_POOL_MAX_SIZE"),
    ({"SONIQ_SCHEDULER_POLL_INTERVAL": "0"}, {}, "SONIQ_SCHEDULER_POLL_INTERVAL"),
    ({"SONIQ_SCHEDULER_MISFIRE_GRACE": "-1"}, {}, "SONIQ_SCHEDULER_MISFIRE_GRACE"),
    ({"SONIQ_METRICS_PORT": "0"}, {}, "SONIQ_METRICS_PORT"),
    ({"SONIQ_METRICS_PORT": "65536"}, {}, "SONIQ_METRICS_PORT"),
    ({"SONIQ_METRICS_PORT": "http"}, {}, "SONIQ_METRICS_PORT"),
    ({"SONIQ_METRICS": "maybe"}, {}, "SONIQ_METRICS"),
    ({}, {"metrics_host": "  "}, "SONIQ_METRICS_HOST"),
    ({"SONIQ_METRICS_INTERVAL": "0"}, {}, "SONIQ_METRICS_INTERVAL"),
    ({"SONIQ_TRACING": "sometimes"}, {}, "SONIQ_TRACING"),
    ({"SONIQ_LOG_FORMAT": "xml"}, {}, "SONIQ_LOG_FORMAT"),
    ({"SONIQ_FINISHED_JOB_RETENTION": "-1"}, {}, "SONIQ_FINISHED_JOB_RETENTION"),
    ({"SONIQ_FINISHED_JOB_RETENTION": "inf"}, {}, "SONIQ_FINISHED_JOB_RETENTION"),
    ({"SONIQ_FINISHED_JOB_RETENTION": "forever"}, {}, "SONIQ_FINISHED_JOB_RETENTION"),
    ({}, {"finished_job_retention": -60}, "SONIQ_FINISHED_JOB_RETENTION"),
    ({"SONIQ_PRUNE_INTERVAL": "-1"}, {}, "SONIQ_PRUNE_INTERVAL"),
    ({"SONIQ_SHUTDOWN_TIMEOUT": "-1"}, {}, "SONIQ_SHUTDOWN_TIMEOUT"),
    ({"SONIQ_SHUTDOWN_TIMEOUT": "inf"}, {}, "SONIQ_SHUTDOWN_TIMEOUT"),
    ({"SONIQ_SHUTDOWN_TIMEOUT": "soon"}, {}, "SONIQ_SHUTDOWN_TIMEOUT"),
    ({"SONIQ_PRUNE_INTERVAL": "nan"}, {}, "SONIQ_PRUNE_INTERVAL"),
    ({"SONIQ_HANDLER_POOL_MAX_SIZE": "0"}, {}, "SONIQ_HANDLER_POOL_MAX_SIZE"),
    ({"SONIQ_HANDLER_TX_IDLE_TIMEOUT": "0"}, {}, "SONIQ_HANDLER_TX_IDLE_TIMEOUT"),
    ({"SONIQ_PROGRESS_INTERVAL": "0"}, {}, "SONIQ_PROGRESS_INTERVAL"),
    ({"SONIQ_WAIT_POLL": "-1"}, {}, "SONIQ_WAIT_POLL"),
]


@pytest.mark.parametrize(("environ", "overrides", "setting"), REJECTIONS)
def test_rejections_name_the_setting(
    environ: dict[str, str], overrides: dict[str, Any], setting: str
) -> None:
    with pytest.raises(SoniqError) as info:
        load(environ, **overrides)
    assert info.value.code == INVALID_SETTING
    assert info.value.details["setting"] == setting
    assert setting in info.value.message


def test_unknown_keyword_setting() -> None:
    with pytest.raises(SoniqError) as info:
        load(bogus_option=1)
    assert info.value.code == INVALID_SETTING
    assert info.value.details["setting"] == "bogus_option"
    assert "bogus_option" in info.value.message


def test_settings_are_frozen() -> None:
    with pytest.raises(ValidationError):
        load().concurrency = 9  # type: ignore[misc]


# -- through Soniq(...) itself ----------------------------------------------------------


def test_soniq_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SONIQ_CONCURRENCY", "9")
    monkeypatch.setenv("SONIQ_ENQUEUE_VALIDATION", "none")
    app = Soniq()
    assert (app.settings.concurrency, app.settings.enqueue_validation) == (9, "none")


def test_soniq_keywords_beat_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SONIQ_CONCURRENCY", "9")
    monkeypatch.setenv("SONIQ_ENQUEUE_VALIDATION", "none")
    app = Soniq(concurrency=2, enqueue_validation="warn")
    assert (app.settings.concurrency, app.settings.enqueue_validation) == (2, "warn")


@pytest.mark.parametrize(
    ("env", "kwargs", "setting"),
    [
        ({"SONIQ_POLL_INTERVAL": "-1"}, {}, "SONIQ_POLL_INTERVAL"),
        ({}, {"enqueue_validation": "maybe"}, "SONIQ_ENQUEUE_VALIDATION"),
        ({}, {"no_such_setting": 1}, "no_such_setting"),
    ],
)
def test_soniq_rejects_bad_settings_at_construction(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], kwargs: dict[str, Any], setting: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SoniqError) as info:
        Soniq(**kwargs)
    assert info.value.code == INVALID_SETTING
    assert info.value.details["setting"] == setting
