"""Commands that show what the queue is doing: ``soniq status`` and ``soniq workers``."""

from __future__ import annotations

from typing import Any

import click

from soniq.cli.durations import format_duration
from soniq.cli.limits import GROUP_COLUMNS, group_row, limits_text
from soniq.cli.output import database_url_option, emit_json, emit_table, json_option
from soniq.cli.session import with_app

_COUNTS = ("runnable", "scheduled", "processing", "done", "cancelled", "failed", "dead_letter")


@click.command()
@json_option
@database_url_option
def status(as_json: bool, database_url: str | None) -> None:
    """Show each queue's jobs by state, its oldest due job and its throughput.

    RUNNABLE jobs are due now; SCHEDULED ones wait for a later time. DONE, CANCELLED and
    FAILED (attempts that raised, retried or dead-lettered) count the last hour, DONE/MIN
    the last 60 seconds, as the workers reported them (every few seconds). DEAD counts
    the queue's rows in the dead-letter table. OLDEST DUE is how long the
    longest-waiting runnable job has been due. Paused queues and queues with limits of
    their own are listed below the table (see `soniq queues`), then any concurrency
    and rate limit groups (see `soniq limits`). The last line counts live workers.
    """
    report = with_app(database_url, lambda app: app.status())
    if as_json:
        emit_json(report)
        return
    rows: list[dict[str, Any]] = report["queues"]
    for row in rows:
        row["oldest"] = format_duration(row["oldest_runnable_age"])
    if len(rows) > 1:
        total: dict[str, Any] = {k: sum(r[k] for r in rows) for k in (*_COUNTS, "done_last_minute")}
        ages = [r["oldest_runnable_age"] for r in rows if r["oldest_runnable_age"] is not None]
        total.update(queue="(all)", oldest=format_duration(max(ages) if ages else None))
        rows = [*rows, total]
    emit_table(
        rows,
        [
            ("queue", "QUEUE"),
            ("runnable", "RUNNABLE"),
            ("scheduled", "SCHEDULED"),
            ("processing", "PROCESSING"),
            ("done", "DONE/1H"),
            ("cancelled", "CANCELLED/1H"),
            ("failed", "FAILED/1H"),
            ("dead_letter", "DEAD"),
            ("oldest", "OLDEST DUE"),
            ("done_last_minute", "DONE/MIN"),
        ],
        empty="No jobs in any queue.",
    )
    pauses = report.get("paused_queues", [])
    for pause in pauses:
        what = "every queue" if pause["name"] == "*" else f"queue {pause['name']}"
        until = pause["paused_until"] or "resumed"
        reason = f" ({pause['reason']})" if pause["reason"] else ""
        click.echo(f"Paused: {what} since {pause['paused_at']}, until {until}{reason}.")
    held = any(p["name"] != "*" for p in pauses) or report.get("limited_queues")
    if held and not report.get("queue_index", True):
        click.echo(
            "No index by queue: workers skip a paused or limited queue's backlog row by "
            "row; `soniq queues index` lets them claim past it."
        )
    for queue in report.get("limited_queues", []):
        limits = limits_text(
            queue["concurrency"], queue["rate_limit"], queue["rate_period"], queue["burst"]
        )
        click.echo(f"Limited: queue {queue['name']}, {limits}.")
    limits = report.get("limit_groups", [])
    if limits:
        click.echo("")
        click.echo("Limits:")
        emit_table([group_row(g) for g in limits], GROUP_COLUMNS)
    stale = report["stale_workers"]
    click.echo(f"Workers: {report['workers']} live" + (f", {stale} stale" if stale else "") + ".")


@click.command()
@json_option
@database_url_option
def workers(as_json: bool, database_url: str | None) -> None:
    """List the registered workers, their heartbeats and the jobs they hold.

    A worker is STALE once it has been silent for longer than $SONIQ_HEARTBEAT_TIMEOUT;
    the next cleanup of a live worker requeues its jobs and removes it.
    """
    rows = with_app(database_url, lambda app: app.list_workers())
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        add_worker_columns(row)
        row["stale_text"] = "yes" if row["stale"] else "no"
    emit_table(
        rows,
        [
            ("id", "ID"),
            ("hostname", "HOST"),
            ("pid", "PID"),
            ("queue_list", "QUEUES"),
            ("concurrency", "CONCURRENCY"),
            ("started_at", "STARTED (UTC)"),
            ("last_heartbeat", "LAST HEARTBEAT (UTC)"),
            ("silent", "SILENT FOR"),
            ("stale_text", "STALE"),
            ("jobs_in_flight", "IN FLIGHT"),
        ],
        empty="No workers registered.",
    )


def add_worker_columns(row: dict[str, Any]) -> None:
    """The printed columns of a ``list_workers()`` row: ``queue_list`` and ``silent``
    (the time since its heartbeat), shared by ``soniq workers`` and ``soniq inspect``."""
    row["queue_list"] = ",".join(row["queues"]) if row["queues"] else "(all)"
    row["silent"] = format_duration(row["seconds_since_heartbeat"])
