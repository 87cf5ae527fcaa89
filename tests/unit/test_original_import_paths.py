"""The original Soniq's import paths and small helpers, for users who switch.

Each path must import and name the object that does the work now, so code written
for the original keeps running with only its install line changed.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

import soniq
import soniq.settings
from soniq import Soniq
from soniq.errors import INVALID_SETTING, SoniqError


@pytest.fixture(autouse=True)
def _fresh_process_settings() -> object:
    """configure() is process-wide: leave it as each test found it."""
    saved = soniq.settings.configured_overrides()
    yield
    soniq.settings._configured.clear()
    soniq.settings._configured.update(saved)
    soniq.settings._cached = None


def test_original_module_paths_name_todays_classes() -> None:
    from soniq.backends import MemoryBackend, PostgresBackend, SQLiteBackend, StorageBackend
    from soniq.backends.memory import MemoryBackend as M2
    from soniq.backends.postgres import PostgresBackend as P2
    from soniq.backends.sqlite import SQLiteBackend as S2
    from soniq.core.registry import JobRegistry
    from soniq.core.worker import Worker
    from soniq.features.dead_letter import DeadLetterFilter, DeadLetterService
    from soniq.features.scheduler import Scheduler
    from soniq.ops.dead_letter import DeadLetterQueue
    from soniq.recurring.service import Scheduler as RealScheduler
    from soniq.worker import Worker as RealWorker

    assert (MemoryBackend, PostgresBackend, SQLiteBackend) == (M2, P2, S2)
    assert issubclass(PostgresBackend, StorageBackend)
    assert issubclass(MemoryBackend, StorageBackend)
    assert Worker is RealWorker
    assert Scheduler is RealScheduler
    assert DeadLetterService is DeadLetterQueue
    assert DeadLetterFilter(queue="q").queue == "q"
    assert JobRegistry.__module__ == "soniq.core.registry"
    app = Soniq(backend="memory")
    assert isinstance(app.dead_letter, DeadLetterService)
    assert isinstance(app.scheduler, Scheduler)


def test_dashboard_flag_is_false_until_a_dashboard_ships() -> None:
    assert soniq.DASHBOARD_AVAILABLE is False
    assert "DASHBOARD_AVAILABLE" in soniq.__all__


async def test_make_app_is_an_in_memory_app_that_runs_jobs() -> None:
    from soniq.testing import drain, make_app

    app = make_app(job_timeout=5)
    seen: list[int] = []

    @app.job(name="collect")
    async def collect(n: int) -> None:
        seen.append(n)

    await app.enqueue(collect, n=3)
    report = await drain(app)
    assert seen == [3]
    assert report.done == 1
    assert app.settings.backend == "memory"
    assert app.settings.job_timeout == 5
    await app.close()


async def test_wait_until_takes_plain_and_async_predicates() -> None:
    from soniq.testing import wait_until

    calls = {"n": 0}

    def third_time() -> bool:
        calls["n"] += 1
        return calls["n"] >= 3

    await wait_until(third_time, timeout=2, poll=0.001)
    assert calls["n"] == 3

    async def ready() -> bool:
        return True

    await wait_until(ready)


async def test_wait_until_raises_assertion_error_with_the_message() -> None:
    from soniq.testing import wait_until

    with pytest.raises(AssertionError, match="never ready"):
        await wait_until(lambda: False, timeout=0.05, poll=0.01, message="never ready")
    with pytest.raises(AssertionError, match=r"within 0\.05s"):
        await wait_until(lambda: 0, timeout=0.05, poll=0.01)


def test_configure_sets_what_new_apps_start_from(monkeypatch: pytest.MonkeyPatch) -> None:
    from soniq.settings import configure, get_settings

    monkeypatch.setenv("SONIQ_JOB_TIMEOUT", "40")
    assert get_settings().job_timeout == 40
    configured = configure(max_retries=7)
    assert configured.max_retries == 7 and configured.job_timeout == 40
    assert get_settings() is configured
    assert Soniq().settings.max_retries == 7
    assert Soniq(max_retries=2).settings.max_retries == 2  # the app's own keywords win


def test_configure_checks_first_and_changes_nothing_on_a_bad_value() -> None:
    from soniq.settings import configure, get_settings

    configure(max_retries=4)
    with pytest.raises(SoniqError) as caught:
        configure(max_retries=-1)
    assert caught.value.code == INVALID_SETTING
    assert isinstance(caught.value, ValueError)
    assert get_settings().max_retries == 4
    assert Soniq().settings.max_retries == 4


def test_reload_settings_reads_the_environment_again(monkeypatch: pytest.MonkeyPatch) -> None:
    from soniq.settings import get_settings, reload_settings

    monkeypatch.setenv("SONIQ_JOB_TIMEOUT", "11")
    first = get_settings()
    monkeypatch.setenv("SONIQ_JOB_TIMEOUT", "12")
    assert get_settings() is first  # cached
    assert reload_settings().job_timeout == 12


def test_find_soniq_app_imports_the_modules_and_returns_their_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import soniq.app_base
    import soniq.cli.worker_app
    from soniq.discovery import find_soniq_app

    # Only this test's apps: discovery looks at every app the process has made.
    fresh: dict[int, object] = {}
    monkeypatch.setattr(soniq.app_base, "INSTANCES", fresh)
    monkeypatch.setattr(soniq.cli.worker_app, "INSTANCES", fresh)
    (tmp_path / "compat_jobs_mod.py").write_text(
        textwrap.dedent(
            """
            from soniq import Soniq
            app = Soniq(database_url="postgresql://u@h/db")

            @app.job(name="compat.ping")
            async def ping() -> None: ...
            """
        )
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SONIQ_JOBS_MODULES", "compat_jobs_mod")
    try:
        found = find_soniq_app()
        assert "compat.ping" in found.registry.names()
        assert found is sys.modules["compat_jobs_mod"].app
    finally:
        sys.modules.pop("compat_jobs_mod", None)
