"""The one settings model: every ``SONIQ_*`` variable, its default and its checks.

Precedence, highest first: keyword arguments to ``Soniq(...)``, then ``SONIQ_*``
environment variables, then the defaults below.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError, field_validator

from soniq.errors import INVALID_SETTING, SoniqValueError

EnqueueValidation = Literal["strict", "warn", "none"]
TracingMode = Literal["auto", "on", "off"]
LogFormat = Literal["text", "json"]
#: Where jobs are stored: see ``soniq.storage.backend.make_backend``.
StorageKind = Literal["postgres", "sqlite", "memory"]

#: Explicit task names: lowercase ASCII segments joined by single dots.
DEFAULT_TASK_NAME_PATTERN = r"^[a-z0-9_\-]+(\.[a-z0-9_\-]+)*$"

# Variables read under a second name as well (the glossary says SONIQ_WORKER_CONCURRENCY).
_ENV_ALIASES: dict[str, tuple[str, ...]] = {"concurrency": ("SONIQ_WORKER_CONCURRENCY",)}
_LIST_FIELDS = frozenset({"jobs_modules", "queues", "plugins"})
# Values of SONIQ_FINISHED_JOB_RETENTION that keep finished jobs for good.
_OFF_WORDS = frozenset({"off", "none", "never"})


def env_name(field: str) -> str:
    """The environment variable that sets ``field``."""
    return "SONIQ_" + field.upper()


class SoniqSettings(BaseModel):
    """All of Soniq's configuration. Build it with :meth:`load`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    database_url: str | None = None
    backend: StorageKind | None = None
    jobs_modules: tuple[str, ...] = ()
    concurrency: int = 4
    max_retries: int = 3
    priority: int = 100
    queues: tuple[str, ...] = ("default",)
    job_timeout: float | None = 300.0
    result_ttl: float = 300.0
    finished_job_retention: float | None = 3600.0
    prune_interval: float = 60.0
    poll_interval: float = 5.0
    heartbeat_interval: float = 5.0
    heartbeat_timeout: float = 300.0
    cleanup_interval: float = 300.0
    task_registry_interval: float = 60.0
    error_retry_delay: float = 5.0
    shutdown_timeout: float = 30.0
    listen_notify: bool = True
    enqueue_validation: EnqueueValidation = "strict"
    task_name_pattern: str = DEFAULT_TASK_NAME_PATTERN
    pool_min_size: int = 1
    pool_max_size: int = 10
    connect_timeout: float = 10.0
    log_level: str = "INFO"
    scheduler_poll_interval: float = 1.0
    scheduler_misfire_grace: float = 60.0
    snooze_max_seconds: float = 86400.0
    #: How many keys one limited claim looks at (SONIQ_LIMIT_KEYS_PER_CLAIM).
    limit_keys_per_claim: int = 64
    #: Seconds after which an idle key's rate and block state is pruned.
    limit_key_idle_ttl: float = 3600.0
    #: Connections of the worker's pool for handler transactions (transactional jobs);
    #: None: the worker's concurrency.
    handler_pool_max_size: int | None = None
    #: idle_in_transaction_session_timeout of handler transactions, in seconds; None:
    #: the job timeout plus 30 s.
    handler_tx_idle_timeout: float | None = None
    #: The least time between two progress writes of one job (ctx.progress), seconds.
    progress_interval: float = 1.0
    #: The safety poll of a wait for a job (handle.wait), seconds.
    wait_poll: float = 2.0
    #: Stamped on every job this process enqueues; None (or "auto"): "<hostname>:<pid>".
    producer_id: str | None = None
    # Observability (see the soniq.observability package).
    metrics: bool = False
    metrics_port: int | None = None
    metrics_host: str = "0.0.0.0"
    metrics_interval: float = 5.0
    tracing: TracingMode = "auto"
    log_format: LogFormat = "text"
    # Entry-point names in group soniq.plugins to install on every app ("*"/"all": all).
    plugins: tuple[str, ...] = ()
    # Webhooks (see the soniq.webhooks package).
    webhook_secret_key: SecretStr | None = None
    webhook_timeout: float = 30.0
    webhook_retry_delay: float = 60.0
    webhook_retry_max_delay: float = 300.0
    webhook_queue: str = "default"

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> SoniqSettings:
        """Read the environment, apply ``overrides``, validate, or raise SoniqError."""
        env = os.environ if environ is None else environ
        unknown = sorted(set(overrides) - set(cls.model_fields))
        if unknown:
            # Refused, not ignored (the original Soniq ignores them): a misspelt
            # setting would otherwise silently keep its default.
            close = difflib.get_close_matches(unknown[0], cls.model_fields, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise SoniqValueError(
                INVALID_SETTING,
                f"Unknown setting {unknown[0]!r}.{hint} Known settings: "
                + ", ".join(sorted(cls.model_fields)),
                setting=unknown[0],
            )
        values: dict[str, Any] = {}
        for field in cls.model_fields:
            if field in overrides:
                values[field] = overrides[field]
                continue
            for name in (env_name(field), *_ENV_ALIASES.get(field, ())):
                raw = env.get(name)
                if raw is not None and raw.strip() != "":
                    values[field] = _split(raw) if field in _LIST_FIELDS else raw.strip()
                    break
        try:
            settings = cls.model_validate(values)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = str(first["loc"][0]) if first["loc"] else ""
            raise SoniqValueError(
                INVALID_SETTING,
                f"{_describe(field, overrides)}: {first['msg'].removeprefix('Value error, ')}. "
                f"Fix the value (got {values.get(field)!r}).",
                setting=env_name(field) if field else None,
            ) from None
        settings._check_relations()
        return settings

    @field_validator("jobs_modules", "queues", "plugins", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        return _split(value) if isinstance(value, str) else value

    @field_validator("job_timeout")
    @classmethod
    def _zero_disables(cls, value: float | None) -> float | None:
        if value is not None and not 0 <= value < math.inf:
            raise ValueError("must be 0 (disabled) or a positive, finite number of seconds")
        return None if value == 0 else value

    @field_validator(
        "poll_interval",
        "heartbeat_interval",
        "heartbeat_timeout",
        "cleanup_interval",
        "task_registry_interval",
        "connect_timeout",
        "error_retry_delay",
        "scheduler_poll_interval",
        "metrics_interval",
        "webhook_timeout",
        "limit_key_idle_ttl",
        "progress_interval",
        "wait_poll",
    )
    @classmethod
    def _positive(cls, value: float) -> float:
        if not 0 < value < math.inf:
            raise ValueError("must be a positive, finite number of seconds")
        return value

    @field_validator(
        "result_ttl",
        "scheduler_misfire_grace",
        "prune_interval",
        "shutdown_timeout",
        "snooze_max_seconds",
        "webhook_retry_delay",
        "webhook_retry_max_delay",
    )
    @classmethod
    def _not_negative(cls, value: float) -> float:
        if not 0 <= value < math.inf:
            raise ValueError("must be a finite number >= 0")
        return value

    @field_validator("finished_job_retention", mode="before")
    @classmethod
    def _off_keeps_forever(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in _OFF_WORDS:
            return None
        return value

    @field_validator("finished_job_retention")
    @classmethod
    def _retention(cls, value: float | None) -> float | None:
        if value is not None and not 0 <= value < math.inf:
            raise ValueError(
                "must be a finite number of seconds >= 0, or off to keep finished jobs"
            )
        return value

    @field_validator("concurrency", "pool_min_size", "pool_max_size", "limit_keys_per_claim")
    @classmethod
    def _at_least_one(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be at least 1")
        return value

    @field_validator("handler_pool_max_size")
    @classmethod
    def _pool_size_or_default(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError("must be at least 1")
        return value

    @field_validator("handler_tx_idle_timeout")
    @classmethod
    def _idle_timeout(cls, value: float | None) -> float | None:
        if value is not None and not 0 < value < math.inf:
            raise ValueError("must be a positive, finite number of seconds")
        return value

    @field_validator("max_retries")
    @classmethod
    def _retries(cls, value: int) -> int:
        if value < 0:
            raise ValueError("must be 0 or more")
        return value

    @field_validator("priority")
    @classmethod
    def _priority(cls, value: int) -> int:
        if not 1 <= value <= 1000:
            raise ValueError("must be between 1 and 1000")
        return value

    @field_validator("metrics_port")
    @classmethod
    def _port(cls, value: int | None) -> int | None:
        if value is not None and not 1 <= value <= 65535:
            raise ValueError("must be a TCP port number between 1 and 65535")
        return value

    @field_validator("webhook_queue")
    @classmethod
    def _queue_name(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must be a queue name, such as default or webhooks")
        return value.strip()

    @field_validator("metrics_host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must be an address to listen on, such as 0.0.0.0 or 127.0.0.1")
        return value.strip()

    @field_validator("enqueue_validation", "tracing", "log_format", "backend", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("producer_id")
    @classmethod
    def _producer(cls, value: str | None) -> str | None:
        if value is None or value.strip().lower() in ("", "auto"):
            return None
        if len(value.strip()) > 255:
            raise ValueError("must be at most 255 characters")
        return value.strip()

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return level

    @field_validator("task_name_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"is not a valid regular expression ({exc})") from None
        return value

    @property
    def metrics_enabled(self) -> bool:
        """Whether Soniq records Prometheus metrics (``SONIQ_METRICS`` or a metrics port)."""
        return self.metrics or self.metrics_port is not None

    def _check_relations(self) -> None:
        if self.heartbeat_timeout <= self.heartbeat_interval:
            raise SoniqValueError(
                INVALID_SETTING,
                f"SONIQ_HEARTBEAT_TIMEOUT ({self.heartbeat_timeout}) must be greater than "
                f"SONIQ_HEARTBEAT_INTERVAL ({self.heartbeat_interval}), or live workers would "
                "be declared dead. Raise the timeout or lower the interval.",
                setting="SONIQ_HEARTBEAT_TIMEOUT",
            )
        if self.pool_max_size < self.pool_min_size:
            raise SoniqValueError(
                INVALID_SETTING,
                f"SONIQ_POOL_MAX_SIZE ({self.pool_max_size}) is below SONIQ_POOL_MIN_SIZE "
                f"({self.pool_min_size}). Raise the maximum or lower the minimum.",
                setting="SONIQ_POOL_MAX_SIZE",
            )


def _describe(field: str, overrides: Mapping[str, Any]) -> str:
    if not field:
        return "Invalid settings"
    if field in overrides:
        return f"Setting {field}= ({env_name(field)})"
    return env_name(field)


def _split(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]


# The process-wide settings of the original's soniq.settings functions: keywords given
# to configure(), and the settings last read (None: read on next get_settings()).
_configured: dict[str, Any] = {}
_cached: SoniqSettings | None = None


def get_settings() -> SoniqSettings:
    """The process-wide settings: the ``SONIQ_*`` environment with what
    :func:`configure` set over it, read once and then cached."""
    global _cached
    if _cached is None:
        _cached = SoniqSettings.load(**_configured)
    return _cached


def configure(**overrides: Any) -> SoniqSettings:
    """Set process-wide settings over the environment; they are checked first (a bad
    value raises ``SONIQ_INVALID_SETTING`` and changes nothing).

    Apps created afterwards start from them: ``Soniq(...)``'s own keywords still win.
    Keywords given to earlier calls are kept unless given again.
    """
    global _cached
    merged = {**_configured, **overrides}
    loaded = SoniqSettings.load(**merged)
    _configured.clear()
    _configured.update(merged)
    _cached = loaded
    return loaded


def reload_settings() -> SoniqSettings:
    """Read the environment again (keeping what :func:`configure` set) and return the
    new process-wide settings."""
    global _cached
    _cached = None
    return get_settings()


def configured_overrides() -> dict[str, Any]:
    """What :func:`configure` set, for ``Soniq(...)`` to start from (a copy)."""
    return dict(_configured)
