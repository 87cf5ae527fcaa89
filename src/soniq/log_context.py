"""Re-export: the logging names' documented path. The code is in
``soniq.observability.log_context``."""

from soniq.observability.log_context import (
    JOB_FIELDS,
    TEXT_FORMAT,
    JobLogFilter,
    JsonLogFormatter,
    configure_process_logging,
    current_job_fields,
)

__all__ = [
    "JOB_FIELDS",
    "TEXT_FORMAT",
    "JobLogFilter",
    "JsonLogFormatter",
    "configure_process_logging",
    "current_job_fields",
]
