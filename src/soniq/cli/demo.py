"""``soniq demo``: see jobs run, retry, dead-letter and recur, in about ten seconds."""

from __future__ import annotations

import contextlib
import logging
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import click

from soniq.cli.output import database_url_option, debug_enabled, emit_table, fail, run
from soniq.dev import embedded
from soniq.dev.demo import CONCURRENCY, DemoProgress, DemoSummary, build_demo_app, run_demo
from soniq.dev.demo_database import demo_database
from soniq.errors import SoniqError
from soniq.storage.urls import sqlite_path


@click.command()
@database_url_option
def demo(database_url: str | None) -> None:
    """Run example jobs with a live display, then print what happened.

    With no database URL, on a throwaway embedded PostgreSQL (soniq[embedded]), or
    on a scratch SQLite file when that extra is not installed. With a PostgreSQL URL,
    in a scratch database created on that server and dropped afterwards, so your own
    workers never see the demo's jobs (a SQLite URL gets a scratch file instead).
    """
    with _quiet_logs():
        summary = _run(database_url)
    _print_summary(summary)
    if not summary.completed:
        click.echo(
            "soniq: error: the demo stopped before its jobs ended (interrupted or out "
            "of time); the counts above are as far as it got.",
            err=True,
        )
        sys.exit(1)


def _run(database_url: str | None) -> DemoSummary:
    try:
        sqlite_file = sqlite_path(database_url) if database_url else None
    except SoniqError as exc:
        fail(exc)
    if database_url and sqlite_file is None:
        click.echo("Running in a scratch database on your server (dropped at the end).")
        return run(lambda: _demo_in(database_url, scratch=True))
    if not database_url and embedded.available():
        try:
            with embedded.throwaway() as server:
                click.echo("Started a throwaway embedded PostgreSQL for the demo.")
                return run(lambda: _demo_in(server.url, scratch=False))
        except SoniqError as exc:
            fail(exc)
    if database_url:
        click.echo("Running on a scratch SQLite file (deleted at the end).")
    else:
        click.echo(
            "Running on a scratch SQLite file: soniq[embedded] is not installed "
            "(pip install 'soniq[embedded]' to see the demo on PostgreSQL)."
        )
    with tempfile.TemporaryDirectory(prefix="soniq-demo-") as folder:
        return run(lambda: _demo_in(str(Path(folder) / "demo.db"), scratch=False))


@contextlib.contextmanager
def _quiet_logs() -> Iterator[None]:
    """Warnings on stderr, except about the demo's own jobs: they fail on purpose."""
    if debug_enabled():
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.addFilter(lambda record: not str(getattr(record, "job_name", "")).startswith("demo."))
    soniq_logger = logging.getLogger("soniq")
    propagate = soniq_logger.propagate
    soniq_logger.addHandler(handler)
    soniq_logger.propagate = False
    try:
        yield
    finally:
        soniq_logger.removeHandler(handler)
        soniq_logger.propagate = propagate


async def _demo_in(url: str, *, scratch: bool) -> DemoSummary:
    async with _database(url, scratch=scratch) as demo_url:
        app = build_demo_app(demo_url)
        try:
            await app.setup()
            return await run_demo(app, _Display().show)
        finally:
            await app.close()


@contextlib.asynccontextmanager
async def _database(url: str, *, scratch: bool) -> AsyncIterator[str]:
    if not scratch:
        yield url
        return
    async with demo_database(url) as demo_url:
        yield demo_url


class _Display:
    """One line redrawn in place on a terminal; a plain line a second otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()
        self.last_line = ""
        self.last_second = -1

    def show(self, now: DemoProgress) -> None:
        line = (
            f"{now.seconds:4.1f}s  queued {now.queued}  running {now.processing}  "
            f"done {now.done}  dead-lettered {now.dead_lettered}  "
            f"periodic runs {now.periodic_runs}"
        )
        if self.tty:
            end = "\n" if now.finished else ""
            click.echo(f"\r{line}\x1b[K" + end, nl=False)
        elif int(now.seconds) != self.last_second or now.finished:
            if line != self.last_line:
                click.echo(line)
            self.last_second = int(now.seconds)
        self.last_line = line


def _print_summary(summary: DemoSummary) -> None:
    if sys.stdout.isatty() and not summary.completed:
        click.echo()  # end the progress line
    click.echo()
    emit_table(
        [
            {"what": "done", "jobs": summary.done, "meaning": "ran to completion"},
            {
                "what": "retried",
                "jobs": summary.retried,
                "meaning": "failed, then succeeded on a later attempt",
            },
            {
                "what": "dead-lettered",
                "jobs": summary.dead_lettered,
                "meaning": "failed every attempt; moved to the dead letters",
            },
            {
                "what": "periodic runs",
                "jobs": summary.periodic_runs,
                "meaning": "enqueued by the scheduler (counted in done)",
            },
        ],
        [("what", "RESULT"), ("jobs", "JOBS"), ("meaning", "MEANING")],
    )
    click.echo(
        f"Throughput: {summary.burst_jobs} quick jobs in {summary.burst_seconds:.2f}s "
        f"({summary.throughput:,.0f} jobs/s, one worker, concurrency {CONCURRENCY}). "
        f"Whole demo: {summary.seconds:.1f}s, mostly waiting for retries and schedules."
    )
