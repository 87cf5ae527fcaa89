"""Plugins through the public API: installing, lifecycle, extension points, entry points
found by importlib.metadata, and the ``soniq`` CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

import soniq_sync
from soniq import JobContext, Soniq
from soniq.errors import (
    APP_FROZEN,
    INVALID_MIGRATION_SOURCE,
    PANEL_DUPLICATE,
    PLUGIN_DUPLICATE,
    PLUGIN_INVALID,
    PLUGIN_LOAD_FAILED,
    SCHEMA_MISSING,
    SoniqError,
)
from soniq.plugin import PanelSpec, discover_plugins


class Recorder:
    """A plugin that records what happens to it in ``events``."""

    version = "1.0"

    def __init__(self, name: str, events: list[str], *, fail_startup: bool = False) -> None:
        self.name = name
        self.events = events
        self.fail_startup = fail_startup

    def install(self, app: Any) -> None:
        self.events.append(f"install {self.name}")

    async def on_startup(self, app: Any) -> None:
        self.events.append(f"startup {self.name}")
        if self.fail_startup:
            raise RuntimeError(f"{self.name} cannot start")

    async def on_shutdown(self, app: Any) -> None:
        self.events.append(f"shutdown {self.name}")
        raise RuntimeError("shutdown errors are swallowed")


def migrations_folder(tmp_path: Path, table: str) -> Path:
    folder = tmp_path / f"migrations_{table}"
    folder.mkdir()
    (folder / "0001_create.sql").write_text(f"CREATE TABLE {table} (id bigserial PRIMARY KEY);")
    (folder / "0002_column.sql").write_text(f"ALTER TABLE {table} ADD COLUMN note text;")
    return folder


def columns(url: str, table: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
            "ORDER BY ordinal_position",
            (table,),
        ).fetchall()
    return [r[0] for r in rows]


# --------------------------------------------------------------------------- installing


async def test_plugins_install_in_order_start_at_setup_and_stop_in_reverse(
    database_url: str,
) -> None:
    events: list[str] = []
    a, b = Recorder("a", events), Recorder("b", events)
    app = Soniq(database_url=database_url, plugins=[a])
    assert app.use(b) is b
    assert [p.name for p in app.plugins] == ["a", "b"]
    assert events == ["install a", "install b"]
    await app.setup()
    await app.ensure_initialized()  # already started: not again
    assert events[2:] == ["startup a", "startup b"]
    await app.close()  # on_shutdown errors are logged, not raised
    assert events[4:] == ["shutdown b", "shutdown a"]
    await app.close()
    assert len(events) == 6


async def test_on_startup_runs_at_first_use_and_its_error_propagates(database_url: str) -> None:
    events: list[str] = []
    bad = Recorder("bad", events, fail_startup=True)
    app = Soniq(
        database_url=database_url,
        enqueue_validation="none",
        plugins=[Recorder("good", events), bad],
    )
    with pytest.raises(RuntimeError, match="bad cannot start"):
        await app.enqueue("plugins.noop", args={})
    assert events == ["install good", "install bad", "startup good", "startup bad"]
    bad.fail_startup = False
    await app.ensure_initialized()  # the failed one is tried again, the other is not
    assert events[4:] == ["startup bad"]
    await app.close()
    assert events[5:] == ["shutdown bad", "shutdown good"]


def test_a_blocking_app_runs_async_plugin_hooks(database_url: str) -> None:
    events: list[str] = []
    app = soniq_sync.Soniq(database_url=database_url, plugins=[Recorder("s", events)])
    app.setup()
    app.close()
    assert events == ["install s", "startup s", "shutdown s"]


def test_duplicate_and_invalid_plugins_are_refused_with_codes() -> None:
    events: list[str] = []
    app = Soniq(backend="memory", plugins=[Recorder("dup", events)])
    with pytest.raises(SoniqError) as info:
        app.use(Recorder("dup", events))
    assert info.value.code == PLUGIN_DUPLICATE
    assert info.value.details["plugin"] == "dup"
    assert events == ["install dup"]  # the second install() never ran
    with pytest.raises(SoniqError) as info:
        Soniq(backend="memory", plugins=[Recorder("x", []), Recorder("x", [])])
    assert info.value.code == PLUGIN_DUPLICATE

    class NoVersion:
        name = "nov"

        def install(self, app: Any) -> None:
            pass

    class AsyncInstall:
        name, version = "ai", "1"

        async def install(self, app: Any) -> None:
            pass

    for bad in (object(), NoVersion(), AsyncInstall()):
        with pytest.raises(SoniqError) as info:
            app.use(bad)
        assert info.value.code == PLUGIN_INVALID
    with pytest.raises(SoniqError) as info:
        Soniq(backend="memory", plugins=Recorder("single", []))  # type: ignore[arg-type]
    assert info.value.code == PLUGIN_INVALID
    assert [p.name for p in app.plugins] == ["dup"]


async def test_a_plugin_cannot_be_installed_once_the_app_is_in_use(app: Soniq) -> None:
    await app.ensure_initialized()
    with pytest.raises(SoniqError) as info:
        app.use(Recorder("late", []))
    assert info.value.code == APP_FROZEN
    assert app.plugins == []


# --------------------------------------------------------------------------- extensions


async def test_a_plugin_adds_hooks_and_middleware(database_url: str) -> None:
    seen: list[str] = []

    class Tracing:
        name, version = "tracing", "0.1"

        def install(self, app: Any) -> None:
            app.before_job(lambda name, job_id, attempt: seen.append(f"before {name}"))

            @app.middleware
            async def around(ctx: JobContext, call_next: Any) -> Any:
                seen.append(f"around {ctx.job_name}")
                return await call_next()

    app = Soniq(database_url=database_url, plugins=[Tracing()])

    @app.job(name="plugins.traced")
    async def traced() -> str:
        return "ok"

    try:
        job_id = await app.enqueue(traced)
        await app.run_worker(run_once=True)
        assert seen == ["before plugins.traced", "around plugins.traced"]
        assert await app.get_result(job_id) == "ok"
    finally:
        await app.close()


async def test_plugin_migrations_are_applied_by_setup_and_tracked_by_prefix(
    database_url: str, tmp_path: Path
) -> None:
    table = f"audit_{uuid.uuid4().hex[:8]}"
    folder = migrations_folder(tmp_path, table)

    class Audit:
        name, version = "audit", "1.0"

        def install(self, app: Any) -> None:
            app.migrations.register_source(folder, prefix="audit")

    app = Soniq(database_url=database_url, plugins=[Audit()])
    try:
        with pytest.raises(SoniqError) as info:  # pending plugin migrations count
            await app.ensure_initialized()
        assert info.value.code == SCHEMA_MISSING
        assert info.value.details["pending"] == ["audit/0001_create", "audit/0002_column"]
        status = await app.migration_status()
        assert status["pending"] == ["audit/0001_create", "audit/0002_column"]

        assert await app.setup() == ["audit/0001_create", "audit/0002_column"]
        assert columns(database_url, table) == ["id", "note"]
        assert await app.setup() == []
        status = await app.migration_status()
        assert status["pending"] == [] and status["unknown"] == []
        versions = [entry["version"] for entry in status["applied"]]
        assert versions[-2:] == ["audit/0001_create", "audit/0002_column"]
        assert "0001_initial" in versions
    finally:
        await app.close()


async def test_a_failing_plugin_migration_applies_nothing(
    database_url: str, tmp_path: Path
) -> None:
    table = f"half_{uuid.uuid4().hex[:8]}"
    folder = migrations_folder(tmp_path, table)
    (folder / "0003_broken.sql").write_text("ALTER TABLE no_such_table ADD COLUMN x int;")
    app = Soniq(database_url=database_url)
    app.migrations.register_source(str(folder), prefix="half")
    try:
        with pytest.raises(psycopg.errors.UndefinedTable):
            await app.setup()
        assert columns(database_url, table) == []
        assert (await app.migration_status())["pending"][0] == "half/0001_create"
    finally:
        await app.close()


def test_migration_sources_are_checked_when_registered(tmp_path: Path) -> None:
    app = Soniq(backend="memory")
    folder = migrations_folder(tmp_path, "t")
    empty = tmp_path / "empty"
    empty.mkdir()
    misnamed = tmp_path / "misnamed"
    misnamed.mkdir()
    (misnamed / "create.sql").write_text("SELECT 1;")
    app.migrations.register_source(folder, prefix="ok")
    for source, prefix in [
        (folder, "ok"),  # prefix taken
        (folder, "bad prefix"),
        (tmp_path / "missing", "p1"),
        (empty, "p2"),
        (misnamed, "p3"),
        ("no.such.package_xyz", "p4"),
    ]:
        with pytest.raises(SoniqError) as info:
            app.migrations.register_source(source, prefix=prefix)
        assert info.value.code == INVALID_MIGRATION_SOURCE, (source, prefix)
    assert [s.prefix for s in app.migrations.sources] == ["ok"]


def test_dashboard_panels_refuse_a_duplicate_id_with_a_value_error() -> None:
    app = Soniq(backend="memory")
    panel = app.dashboard.add_panel(PanelSpec("queues", "Queues", lambda: "<p>q</p>"))
    with pytest.raises(ValueError) as info:
        app.dashboard.add_panel(PanelSpec("queues", "Other", lambda: ""))
    assert isinstance(info.value, SoniqError)
    assert info.value.code == PANEL_DUPLICATE
    assert app.dashboard.panels == [panel]


# --------------------------------------------------------------------------- entry points

PLUGIN_MODULE = '''
import anyio
import click

class Audit:
    name = "audit"
    version = "1.0"

    def install(self, app):
        app.migrations.register_source({folder!r}, prefix="audit")

        @click.command("audit-report")
        @click.option("--title", default="audit")
        def report(title):
            """Print the plugins of the CLI's app."""
            names = ",".join(p.name for p in app.plugins)
            status = anyio.run(app.migration_status)
            click.echo(f"{{title}}: plugins={{names}} pending={{len(status['pending'])}}")

        app.cli.add_command(report)

class Extra:
    name = "extra"
    version = "2.0"

    def install(self, app):
        pass

not_a_plugin = 42
'''


@pytest.fixture
def plugin_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A distribution on sys.path declaring soniq.plugins entry points (found by
    importlib.metadata), with a plugin bringing a migration and a CLI command."""
    table = f"audit_{uuid.uuid4().hex[:8]}"
    site = tmp_path / "site"
    site.mkdir()
    module = f"soniq_plugin_{uuid.uuid4().hex[:8]}"
    folder = migrations_folder(tmp_path, table)
    (site / f"{module}.py").write_text(PLUGIN_MODULE.format(folder=str(folder)))
    (site / f"{module}_broken.py").write_text("raise ImportError('plugin import broke')\n")
    info = site / f"{module}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        textwrap.dedent(
            f"""\
            [soniq.plugins]
            audit = {module}:Audit
            extra = {module}:Extra
            broken = {module}_broken:Plugin
            notplugin = {module}:not_a_plugin
            """
        )
    )
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv("SONIQ_PLUGINS", raising=False)
    (tmp_path / "table").write_text(table)
    return site


def table_of(site: Path) -> str:
    return (site.parent / "table").read_text()


def test_entry_points_load_only_when_asked(
    plugin_dist: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert Soniq(backend="memory").plugins == []
    monkeypatch.setenv("SONIQ_PLUGINS", "extra")
    assert [p.name for p in Soniq(backend="memory").plugins] == ["extra"]
    assert [p.name for p in Soniq(backend="memory", plugins=["audit"]).plugins] == [
        "audit",
        "extra",
    ]
    monkeypatch.delenv("SONIQ_PLUGINS")
    assert [p.name for p in Soniq(backend="memory", plugins=["extra"]).plugins] == ["extra"]
    assert [p.name for p in discover_plugins(["audit", "extra"])] == ["audit", "extra"]


def test_autoload_and_star_load_every_entry_point_and_name_a_broken_one(
    plugin_dist: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SoniqError) as info:
        Soniq(backend="memory", autoload_plugins=True)
    assert info.value.code == PLUGIN_LOAD_FAILED
    assert info.value.details["entry_point"] == "broken"
    assert "plugin import broke" in info.value.message
    monkeypatch.setenv("SONIQ_PLUGINS", "*")
    with pytest.raises(SoniqError) as info:
        Soniq(backend="memory")
    assert info.value.code == PLUGIN_LOAD_FAILED


def test_a_missing_or_non_plugin_entry_point_is_a_coded_error(
    plugin_dist: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SONIQ_PLUGINS", "audit,nosuch")
    with pytest.raises(SoniqError) as info:
        Soniq(backend="memory")
    assert info.value.code == PLUGIN_LOAD_FAILED
    assert info.value.details["entry_point"] == "nosuch"
    monkeypatch.setenv("SONIQ_PLUGINS", "notplugin")
    with pytest.raises(SoniqError) as info:
        Soniq(backend="memory")
    assert info.value.code == PLUGIN_INVALID
    assert "notplugin" in info.value.message


def test_an_app_installing_a_plugin_itself_may_run_where_soniq_plugins_names_it(
    plugin_dist: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SONIQ_PLUGINS", "extra")
    [extra] = discover_plugins(["extra"])
    app = Soniq(backend="memory", plugins=[extra])
    assert app.plugins == [extra]


# --------------------------------------------------------------------------- the CLI


def soniq_cli(*args: str, url: str, site: Path, plugins: str | None = None) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SONIQ_")}
    env["SONIQ_DATABASE_URL"] = url
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")])
    if plugins is not None:
        env["SONIQ_PLUGINS"] = plugins
    return subprocess.run(
        [sys.executable, "-m", "soniq", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_soniq_setup_applies_a_plugin_migration_and_its_command_runs(
    plugin_dist: Path, database_url: str
) -> None:
    table = table_of(plugin_dist)
    before = soniq_cli("--plugins", "audit", "audit-report", url=database_url, site=plugin_dist)
    assert before.returncode == 0, before.stderr
    assert before.stdout.strip() == "audit: plugins=audit pending=2"

    setup = soniq_cli("--plugins", "audit", "setup", url=database_url, site=plugin_dist)
    assert setup.returncode == 0, setup.stderr
    assert "audit/0001_create, audit/0002_column" in setup.stdout
    assert columns(database_url, table) == ["id", "note"]

    after = soniq_cli(
        "audit-report", "--title", "env", url=database_url, site=plugin_dist, plugins="audit"
    )
    assert after.returncode == 0, after.stderr
    assert after.stdout.strip() == "env: plugins=audit pending=0"
    listed = soniq_cli("--plugins=audit", "--help", url=database_url, site=plugin_dist)
    assert "audit-report" in listed.stdout


def test_the_cli_without_plugins_has_no_plugin_commands_and_names_a_bad_one(
    plugin_dist: Path, database_url: str
) -> None:
    plain = soniq_cli("audit-report", url=database_url, site=plugin_dist)
    assert plain.returncode == 2
    assert "No such command 'audit-report'" in plain.stderr
    bad = soniq_cli("--plugins", "nosuch", "status", url=database_url, site=plugin_dist)
    assert bad.returncode == 1
    assert f"{PLUGIN_LOAD_FAILED}:" in bad.stderr and "nosuch" in bad.stderr
