"""``soniq inspect``: the original Soniq's fleet report, over ``workers`` and schedules.

Health (degraded when any worker is stale), the live and stale counts and their total
concurrency, each worker, and the recurring schedules' counts. ``soniq workers`` and
``soniq status`` give the same facts in more detail.
"""

from __future__ import annotations

from typing import Any

import click

from soniq.app import Soniq
from soniq.cli.output import database_url_option, emit_json, emit_table, json_option
from soniq.cli.session import with_app
from soniq.cli.status import add_worker_columns


@click.command("inspect")
@click.option("--stale", is_flag=True, help="List only the stale workers.")
@click.option(
    "--cleanup",
    is_flag=True,
    help="First recover stale workers now: requeue their jobs and remove them "
    "(what a live worker does every $SONIQ_CLEANUP_INTERVAL).",
)
@click.option("--schedules", is_flag=True, help="Also list each recurring schedule.")
@json_option
@database_url_option
def inspect_fleet(
    stale: bool, cleanup: bool, schedules: bool, as_json: bool, database_url: str | None
) -> None:
    """Show the fleet's health, its workers and its recurring schedules."""

    async def use(app: Soniq) -> dict[str, Any]:
        recovered = None
        if cleanup:
            await app.ensure_initialized()
            done = await app.store.workers.recover_stale(app.settings.heartbeat_timeout)
            recovered = done._asdict()
        workers = await app.list_workers()
        rules = await app.scheduler.list()
        return {"recovered": recovered, "workers": workers, "schedules": rules}

    report = with_app(database_url, use)
    workers: list[dict[str, Any]] = report["workers"]
    stale_rows = [w for w in workers if w["stale"]]
    live_rows = [w for w in workers if not w["stale"]]
    rules: list[dict[str, Any]] = report["schedules"]
    active = sum(1 for rule in rules if rule["status"] == "active")
    summary = {
        "health": "degraded" if stale_rows else "healthy",
        "live_workers": len(live_rows),
        "stale_workers": len(stale_rows),
        "total_concurrency": sum(w["concurrency"] for w in live_rows),
        "schedules": {"total": len(rules), "active": active, "paused": len(rules) - active},
    }
    if as_json:
        emit_json(
            {
                **summary,
                "recovered": report["recovered"],
                "workers": stale_rows if stale else workers,
                **({"schedule_list": rules} if schedules else {}),
            }
        )
        return
    if report["recovered"] is not None:
        r = report["recovered"]
        click.echo(
            f"Recovered {r['workers']} stale worker(s): {r['requeued']} job(s) requeued, "
            f"{r['dead_lettered']} dead-lettered."
        )
    click.echo(
        f"Health: {summary['health']}. Workers: {len(live_rows)} live, {len(stale_rows)} "
        f"stale; total concurrency {summary['total_concurrency']}."
    )
    shown = stale_rows if stale else workers
    for row in shown:
        row["where"] = f"{row['hostname']}:{row['pid']}"
        add_worker_columns(row)
        row["state"] = "stale" if row["stale"] else "live"
    emit_table(
        shown,
        [
            ("where", "HOST:PID"),
            ("state", "STATE"),
            ("queue_list", "QUEUES"),
            ("concurrency", "CONCURRENCY"),
            ("started_at", "STARTED (UTC)"),
            ("silent", "SILENT FOR"),
            ("jobs_in_flight", "IN FLIGHT"),
        ],
        empty="No stale workers." if stale else "No workers registered.",
    )
    counts = summary["schedules"]
    click.echo(
        f"Recurring schedules: {counts['total']} ({counts['active']} active, "
        f"{counts['paused']} paused)."
    )
    if schedules and rules:
        emit_table(
            rules,
            [("name", "NAME"), ("status", "STATE"), ("next_run_at", "NEXT RUN (UTC)")],
        )
