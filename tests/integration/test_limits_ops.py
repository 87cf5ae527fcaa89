"""app.limits: concurrency and rate limits changed at runtime, fleet-wide, on real
PostgreSQL, through the public API, the blocking twin and the CLI."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result

import soniq_sync
from soniq import Concurrency, RateLimit, Soniq, SoniqError
from soniq.cli import main
from soniq.cli.limits import parse_rate, rate_text
from soniq.errors import (
    INVALID_ARGUMENT,
    INVALID_SCHEDULE,
    LIMIT_KEY_INVALID,
    NAIVE_DATETIME,
    NOT_SUPPORTED_BY_BACKEND,
)
from soniq.ops.limits import LimitGroupInfo
from soniq.worker import Worker
from tests.helpers import wait_for
from tests.integration import test_big_table_plans as big


def soniq(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


async def groups(app: Soniq, keys: bool = False) -> dict[str, LimitGroupInfo]:
    return {info.name: info for info in await app.limits.list(keys=keys)}


async def job_row(app: Soniq, job_id: str) -> dict[str, Any]:
    job = await app.get_job(job_id)
    assert job is not None
    return job


def key_rows(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM soniq_limit_keys").fetchone()
    assert row is not None
    return int(row[0])


# ------------------------------------------------------------------- the public API


async def test_set_list_and_clear_round_trip(app: Soniq) -> None:
    info = await app.limits.set("emails", concurrency=5, rate=RateLimit(50, 1, burst=3))
    assert (info.name, info.concurrency, info.source) == ("emails", 5, "runtime")
    assert (info.rate_limit, info.rate_period, info.burst) == (50, 1.0, 3)
    assert info.updated_at is not None and info.running is None and info.keys is None

    # A set replaces the group's limits as a whole: what is left out is no limit.
    again = await app.limits.set("emails", rate=RateLimit(10, timedelta(minutes=1)))
    assert (again.concurrency, again.rate_limit, again.rate_period, again.burst) == (
        None,
        10,
        60.0,
        1,
    )
    listed = (await groups(app))["emails"]
    assert (listed.running, listed.queued, listed.source) == (0, 0, "runtime")
    assert listed.declared is None
    body = json.loads(json.dumps(listed.as_dict()))
    assert body["name"] == "emails" and body["rate_period"] == 60.0 and body["keys"] is None

    # Nothing declares the group, so clearing it forgets it.
    assert await app.limits.clear("emails") is True
    assert await app.limits.clear("emails") is False
    assert await app.limits.list() == []


async def test_a_runtime_set_survives_a_worker_start_and_clear_goes_back_to_the_code(
    app: Soniq,
) -> None:
    @app.job(name="ops.sync_crm", concurrency=Concurrency(2))
    async def sync_crm() -> None: ...

    await app.limits.set("ops.sync_crm", concurrency=5)
    await app.run_worker(run_once=True)  # declares Concurrency(2) as it starts
    info = (await groups(app))["ops.sync_crm"]
    assert (info.source, info.concurrency) == ("runtime", 5)
    assert info.declared is not None and info.declared["concurrency"] == 2

    assert await app.limits.clear("ops.sync_crm") is True
    info = (await groups(app))["ops.sync_crm"]
    assert (info.source, info.concurrency) == ("code", 2)
    await app.run_worker(run_once=True)
    assert (await groups(app))["ops.sync_crm"].concurrency == 2


async def test_a_set_takes_effect_on_the_next_claim(app: Soniq) -> None:
    """Six jobs of a task limited to one at a time; raising the limit to 3 while they
    wait lets exactly three run together, never more."""
    running = 0
    peak = 0
    release = asyncio.Event()

    @app.job(name="ops.export", concurrency=Concurrency(1))
    async def export(n: int) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            await release.wait()
        finally:
            running -= 1

    ids = [await app.enqueue(export, n=n) for n in range(6)]
    await app.ensure_initialized()
    worker = Worker(app.backend, app.registry, app.settings)
    run = asyncio.create_task(worker.run(concurrency=8))
    try:
        await wait_for(lambda: running == 1, timeout=20, message="the first job to start")
        info = (await groups(app))["ops.export"]
        assert (info.running, info.queued, info.concurrency) == (1, 5, 1)

        await app.limits.set("ops.export", concurrency=3)
        await wait_for(lambda: running == 3, timeout=20, message="three jobs at once")
        assert (await groups(app))["ops.export"].running == 3
        release.set()

        async def all_done() -> bool:
            return all([(await job_row(app, j))["status"] == "done" for j in ids])

        await wait_for(all_done, timeout=30, message="every job to finish")
    finally:
        release.set()
        worker.stop()
        await run
    assert peak == 3


async def test_block_holds_a_keys_jobs_and_unblock_releases_them(app: Soniq) -> None:
    @app.job(name="ops.notify", concurrency=Concurrency(5, key="{customer}"))
    async def notify(customer: str) -> None: ...

    held = [await app.enqueue(notify, customer="acme") for _ in range(2)]
    free = await app.enqueue(notify, customer="globex")
    before = datetime.now(timezone.utc)
    until = await app.limits.block("ops.notify:acme", until=60)
    assert timedelta(seconds=55) < until - before < timedelta(seconds=65)
    # A shorter block does not cut a longer one short.
    assert await app.limits.block("ops.notify:acme", until=timedelta(seconds=5)) == until

    await app.run_worker(run_once=True)
    assert (await job_row(app, free))["status"] == "done"
    for job_id in held:
        row = await job_row(app, job_id)
        assert (row["status"], row["attempts"]) == ("queued", 0)
    keys = (await groups(app, keys=True))["ops.notify"].keys
    assert keys is not None
    (acme,) = keys
    assert (acme.key, acme.queued, acme.running, acme.blocked_until) == (
        "ops.notify:acme",
        2,
        0,
        until,
    )
    assert acme.as_dict()["blocked_until"] == until.isoformat()

    assert await app.limits.unblock("ops.notify:acme") is True
    assert await app.limits.unblock("ops.notify:acme") is False
    await app.run_worker(run_once=True)
    assert [(await job_row(app, j))["status"] for j in held] == ["done", "done"]


async def test_block_takes_an_aware_datetime(app: Soniq) -> None:
    end = datetime.now(timezone.utc) + timedelta(minutes=10)
    until = await app.limits.block("reports", until=end)
    assert abs(until - end) < timedelta(seconds=5)  # the database's clock decides
    assert await app.limits.unblock("reports") is True


async def test_concurrency_zero_holds_every_job_of_the_group(app: Soniq) -> None:
    @app.job(name="ops.held", concurrency=Concurrency(4))
    async def held() -> None: ...

    job_id = await app.enqueue(held)
    await app.limits.set("ops.held", concurrency=0)
    await app.run_worker(run_once=True)
    row = await job_row(app, job_id)
    assert (row["status"], row["attempts"]) == ("queued", 0)
    await app.limits.clear("ops.held")
    await app.run_worker(run_once=True)
    assert (await job_row(app, job_id))["status"] == "done"


@pytest.mark.parametrize(
    ("call", "args", "kwargs", "code"),
    [
        ("set", ("",), {"concurrency": 1}, INVALID_ARGUMENT),
        ("set", ("a:b",), {"concurrency": 1}, INVALID_ARGUMENT),
        ("set", (7,), {"concurrency": 1}, INVALID_ARGUMENT),
        ("set", ("g" * 501,), {"concurrency": 1}, INVALID_ARGUMENT),
        ("set", ("g",), {}, INVALID_ARGUMENT),
        ("set", ("g",), {"concurrency": -1}, INVALID_ARGUMENT),
        ("set", ("g",), {"concurrency": True}, INVALID_ARGUMENT),
        ("set", ("g",), {"concurrency": 1.5}, INVALID_ARGUMENT),
        ("set", ("g",), {"concurrency": 2**31}, INVALID_ARGUMENT),
        ("set", ("g",), {"rate": 5}, INVALID_ARGUMENT),
        ("set", ("g",), {"rate": RateLimit(0, 1)}, INVALID_ARGUMENT),
        ("set", ("g",), {"rate": RateLimit(1, 0)}, INVALID_ARGUMENT),
        ("set", ("g",), {"rate": RateLimit(1, float("inf"))}, INVALID_ARGUMENT),
        ("set", ("g",), {"rate": RateLimit(1, "1s")}, INVALID_ARGUMENT),  # type: ignore[arg-type]
        ("set", ("g",), {"rate": RateLimit(1, 1, burst=0)}, INVALID_ARGUMENT),
        ("set", ("g",), {"rate": RateLimit(1, 86400, burst=10_000)}, INVALID_ARGUMENT),
        ("set", ("g",), {"concurrency": 1, "rate": RateLimit(1, 400 * 86400)}, INVALID_ARGUMENT),
        ("clear", ("",), {}, INVALID_ARGUMENT),
        ("clear", ("a:b",), {}, INVALID_ARGUMENT),
        ("block", ("", 10), {}, LIMIT_KEY_INVALID),
        ("block", (":x", 10), {}, LIMIT_KEY_INVALID),
        ("block", (None, 10), {}, LIMIT_KEY_INVALID),
        ("block", ("g", -5), {}, INVALID_SCHEDULE),
        ("block", ("g", 0), {}, INVALID_ARGUMENT),
        ("block", ("g", "soon"), {}, INVALID_ARGUMENT),
        ("block", ("g", True), {}, INVALID_ARGUMENT),
        ("block", ("g", datetime(2020, 1, 1, tzinfo=timezone.utc)), {}, INVALID_ARGUMENT),
        ("block", ("g", datetime(2030, 1, 1)), {}, NAIVE_DATETIME),
        ("unblock", ("",), {}, LIMIT_KEY_INVALID),
        ("list", (), {"keys": "yes"}, INVALID_ARGUMENT),
    ],
)
async def test_bad_arguments_are_refused_and_write_nothing(
    app: Soniq, call: str, args: tuple[Any, ...], kwargs: dict[str, Any], code: str
) -> None:
    with pytest.raises(SoniqError) as caught:
        await getattr(app.limits, call)(*args, **kwargs)
    assert caught.value.code == code
    assert caught.value.message
    assert await app.limits.list() == []
    url = app.settings.database_url
    assert url is not None
    assert key_rows(url) == 0


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
async def test_local_backends_refuse_limits(tmp_path: Path, kind: str) -> None:
    if kind == "sqlite":
        app = Soniq(database_url=f"sqlite:///{tmp_path / 'jobs.db'}")
    else:
        app = Soniq(backend="memory")
    try:
        for call in (
            lambda: app.limits.set("g", concurrency=1),
            lambda: app.limits.clear("g"),
            lambda: app.limits.block("g", 10),
            lambda: app.limits.unblock("g"),
            lambda: app.limits.list(),
        ):
            with pytest.raises(SoniqError) as caught:
                await call()
            assert caught.value.code == NOT_SUPPORTED_BY_BACKEND
            assert "PostgreSQL" in caught.value.message
        assert (await app.status())["limit_groups"] == []
    finally:
        await app.close()


async def test_status_lists_the_limit_groups(app: Soniq) -> None:
    @app.job(name="ops.report", concurrency=Concurrency(1))
    async def report() -> None: ...

    await app.enqueue(report)
    await app.limits.set("ops.report", concurrency=2)
    (group,) = (await app.status())["limit_groups"]
    assert group["name"] == "ops.report" and group["concurrency"] == 2
    assert (group["source"], group["queued"], group["running"]) == ("runtime", 1, 0)
    assert "keys" not in group


def test_the_blocking_twin_sets_lists_blocks_and_clears(sync_app: soniq_sync.Soniq) -> None:
    info = sync_app.limits.set("sync-group", concurrency=3, rate=RateLimit(5, 2))
    assert (info.concurrency, info.rate_limit, info.rate_period) == (3, 5, 2.0)
    assert [g.name for g in sync_app.limits.list()] == ["sync-group"]
    until = sync_app.limits.block("sync-group:a", 30)
    (listed,) = sync_app.limits.list(keys=True)
    assert listed.keys is not None
    assert [(k.key, k.blocked_until) for k in listed.keys] == [("sync-group:a", until)]
    assert sync_app.limits.unblock("sync-group:a") is True
    assert sync_app.status()["limit_groups"][0]["name"] == "sync-group"
    assert sync_app.limits.clear("sync-group") is True
    assert sync_app.limits.list() == []


# ------------------------------------------------------------------------ the CLI


@pytest.mark.parametrize(
    ("text", "limit", "period"),
    [
        ("50/s", 50, 1.0),
        ("100/min", 100, 60.0),
        ("100/m", 100, 60.0),
        ("5/h", 5, 3600.0),
        ("2/d", 2, 86400.0),
        ("10/2s", 10, 2.0),
        ("5/1h30m", 5, 5400.0),
        ("3/90", 3, 90.0),
        (" 7 / S ", 7, 1.0),
    ],
)
def test_parse_rate_reads_what_people_type(text: str, limit: int, period: float) -> None:
    rate = parse_rate(text, burst=4)
    assert (rate.limit, rate.period, rate.burst) == (limit, period, 4)


@pytest.mark.parametrize(
    "text", ["50", "/s", "0/s", "1.5/s", "50/", "50/ms", "50/0s", "-1/s", "abc", "5/s/2"]
)
def test_parse_rate_refuses_anything_else(text: str) -> None:
    with pytest.raises(SoniqError) as caught:
        parse_rate(text)
    assert caught.value.code == INVALID_ARGUMENT
    assert "50/s" in caught.value.message  # the hint


def test_rate_text_reads_back_as_a_rate() -> None:
    assert rate_text(50, 1.0) == "50/s"
    assert rate_text(100, 60.0, 5) == "100/min (burst 5)"
    assert rate_text(10, 2.0) == "10/2s"
    assert rate_text(None, None) == "-"


def test_cli_set_list_clear_and_status(database_url: str) -> None:
    url = ("--database-url", database_url)
    made = soniq(
        "limits", "set", "emails", "--concurrency", "4", "--rate", "100/min",
        "--burst", "10", "--json", *url,
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    body = json.loads(made.output)
    assert (body["name"], body["concurrency"], body["source"]) == ("emails", 4, "runtime")
    assert (body["rate_limit"], body["rate_period"], body["burst"]) == (100, 60.0, 10)

    text = soniq("limits", "set", "emails", "--rate", "50/s", *url)
    assert text.exit_code == 0
    assert "concurrency no limit, rate 50/s" in text.output

    listed = json.loads(soniq("limits", "list", "--json", *url).output)
    assert [(g["name"], g["concurrency"], g["rate_limit"]) for g in listed] == [
        ("emails", None, 50)
    ]
    assert listed[0]["keys"] is None
    table = soniq("limits", "list", *url).output
    assert "GROUP" in table and "emails" in table and "50/s" in table and "runtime" in table

    status = soniq("status", *url).output
    assert "Limits:" in status and "emails" in status
    status_json = json.loads(soniq("status", "--json", *url).output)
    assert [g["name"] for g in status_json["limit_groups"]] == ["emails"]

    cleared = soniq("limits", "clear", "emails", "--json", *url)
    assert json.loads(cleared.output) == {"name": "emails", "cleared": True}
    again = soniq("limits", "clear", "emails", *url)
    assert again.exit_code == 0 and "not known" in again.output
    assert soniq("limits", "list", *url).output == "No limits.\n"
    assert "Limits:" not in soniq("status", *url).output
    assert json.loads(soniq("status", "--json", *url).output)["limit_groups"] == []


def test_cli_block_list_keys_and_unblock(database_url: str) -> None:
    url = ("--database-url", database_url)
    blocked = soniq("limits", "block", "crm:acme", "--for", "30s", "--json", *url)
    assert blocked.exit_code == 0, blocked.output
    body = json.loads(blocked.output)
    assert body["key"] == "crm:acme"
    until = datetime.fromisoformat(body["blocked_until"])
    assert timedelta(seconds=25) < until - datetime.now(timezone.utc) <= timedelta(seconds=30)

    end = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    later = soniq("limits", "block", "crm:globex", "--until", end, *url)
    assert later.exit_code == 0 and "Blocked key 'crm:globex'" in later.output

    # Blocked keys show under their group, which has no row and no jobs: its keys are
    # listed with --keys once the group is set.
    assert soniq("limits", "set", "crm", "--concurrency", "2", *url).exit_code == 0
    listed = json.loads(soniq("limits", "list", "--keys", "--json", *url).output)
    (crm,) = listed
    assert sorted(k["key"] for k in crm["keys"]) == ["crm:acme", "crm:globex"]
    assert all(k["blocked_until"] for k in crm["keys"])
    table = soniq("limits", "list", "--keys", *url).output
    assert "BLOCKED UNTIL" in table and "crm:acme" in table

    unblocked = soniq("limits", "unblock", "crm:acme", "--json", *url)
    assert json.loads(unblocked.output) == {"key": "crm:acme", "unblocked": True}
    again = soniq("limits", "unblock", "crm:acme", *url)
    assert again.exit_code == 0 and "was not blocked" in again.output


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("set", "emails"), "SONIQ_INVALID_ARGUMENT"),
        (("set", "emails", "--rate", "fast"), "SONIQ_INVALID_ARGUMENT"),
        (("set", "emails", "--rate", "0/s"), "SONIQ_INVALID_ARGUMENT"),
        (("set", "emails", "--concurrency", "1", "--burst", "3"), "SONIQ_INVALID_ARGUMENT"),
        (("set", "emails", "--concurrency", "-1"), "SONIQ_INVALID_ARGUMENT"),
        (("set", "emails", "--rate", "5/s", "--burst", "0"), "SONIQ_INVALID_ARGUMENT"),
        (("set", "a:b", "--concurrency", "1"), "SONIQ_INVALID_ARGUMENT"),
        (("clear", "a:b"), "SONIQ_INVALID_ARGUMENT"),
        (("block", "crm:acme"), "SONIQ_INVALID_ARGUMENT"),
        (("block", "crm:acme", "--for", "1m", "--until", "2030-01-01T00:00:00+00:00"),
         "SONIQ_INVALID_ARGUMENT"),
        (("block", "crm:acme", "--until", "2030-01-01T00:00:00"), "SONIQ_INVALID_ARGUMENT"),
        (("block", "crm:acme", "--until", "tomorrow"), "SONIQ_INVALID_ARGUMENT"),
        (("block", "crm:acme", "--for", "soon"), "SONIQ_INVALID_DURATION"),
        (("block", "crm:acme", "--for", "0"), "SONIQ_INVALID_ARGUMENT"),
        (("block", ":acme", "--for", "1m"), "SONIQ_LIMIT_KEY_INVALID"),
        (("unblock", ":acme"), "SONIQ_LIMIT_KEY_INVALID"),
    ],
)  # fmt: skip
def test_cli_refuses_bad_input_and_writes_nothing(
    database_url: str, args: tuple[str, ...], code: str
) -> None:
    result = CliRunner().invoke(main, ["limits", *args, "--database-url", database_url])
    assert result.exit_code == 1, result.output
    assert code in result.stderr and "soniq: error:" in result.stderr
    listed = soniq("limits", "list", "--json", "--database-url", database_url)
    assert json.loads(listed.output) == []
    assert key_rows(database_url) == 0


# ------------------------------------------------------------------- on a big table


@pytest.mark.parametrize(
    ("name", "params"), [("limit_list", {}), ("limit_keys_top", {"group": "g", "limit": 10})]
)
async def test_the_limit_counts_read_only_the_live_rows(
    database_url: str, name: str, params: dict[str, Any]
) -> None:
    """``app.status()`` lists the limit groups, and status never scans the table: on
    many finished rows and a few live ones, the counts read the live ones only."""
    now = datetime.now(timezone.utc)
    await big._load(database_url, big.DONE, status="done", at=now - timedelta(minutes=30))
    await big._load(database_url, 50, at=now - timedelta(minutes=1))
    await big._load(database_url, 20, at=now + timedelta(hours=1), delayed=True)
    plan = await big._explain(database_url, name, params)
    big._no_table_scan(plan)
    rows_read = sum(
        n.get("Actual Rows", 0)
        for n in big._nodes(plan)
        if n.get("Relation Name") == "soniq_jobs" or "soniq_jobs" in n.get("Index Name", "")
    )
    assert rows_read < big.DONE / 10, json.dumps(plan, indent=1)
