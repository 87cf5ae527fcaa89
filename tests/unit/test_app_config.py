"""AppConfig's freeze rules and AppRuntime's parts, without any I/O."""

from __future__ import annotations

import threading

import pytest

from soniq.app_config import HOOK_EVENTS, AppConfig
from soniq.app_runtime import MAX_PLANS, AppRuntime
from soniq.core.registry import build_spec
from soniq.errors import APP_FROZEN, SoniqError
from soniq.settings import SoniqSettings


def settings(**overrides: object) -> SoniqSettings:
    return SoniqSettings.load(environ={}, **overrides)


def hook(*args: object) -> None: ...


def handler() -> None: ...


def test_a_new_config_is_open_and_empty() -> None:
    config = AppConfig(settings())
    assert (config.in_use, config.serving) == (False, False)
    assert config.hooks == {event: [] for event in HOOK_EVENTS}
    assert config.middleware == [] and config.periodic_jobs == {} and len(config.registry) == 0
    new = settings(priority=5)
    config.set_settings(new)
    assert config.settings is new


def test_in_use_the_settings_are_refused_and_kept() -> None:
    old = settings()
    config = AppConfig(old)
    config.freeze()
    with pytest.raises(SoniqError) as caught:
        config.set_settings(settings(priority=5))
    assert caught.value.code == APP_FROZEN and caught.value.details == {"part": "settings"}
    assert "reconfigure" in caught.value.message
    assert config.settings is old
    config.add_hook("before_job", hook)  # no worker yet: hooks stay open
    assert config.hooks["before_job"] == [hook]


def test_serving_the_hooks_are_refused_and_kept() -> None:
    config = AppConfig(settings())
    config.freeze(worker=True)
    assert (config.in_use, config.serving) == (True, True)
    for event in HOOK_EVENTS:
        with pytest.raises(SoniqError) as caught:
            config.add_hook(event, hook)
        assert caught.value.code == APP_FROZEN
        assert caught.value.details == {"part": "hooks", "event": event}
    assert config.hooks == {event: [] for event in HOOK_EVENTS}
    # The registry never freezes.
    config.registry.add(
        build_spec(
            handler,
            name="late.job",
            retries=0,
            priority=100,
            queue=None,
            unique=False,
            retry_delay=0,
            retry_backoff=False,
            retry_max_delay=None,
            timeout=None,
            args_model=None,
            name_pattern=config.settings.task_name_pattern,
        )
    )
    assert config.registry.get("late.job") is not None


def test_replace_settings_thaw_and_restore() -> None:
    config = AppConfig(settings())
    config.freeze(worker=True)
    new = settings(priority=5)
    config.replace_settings(new)  # reconfigure's path: allowed while in use
    assert config.settings is new
    state = config.state()
    config.thaw()
    assert (config.in_use, config.serving) == (False, False)
    config.restore(state)
    assert (config.in_use, config.serving) == (True, True)


def test_sharing_declarations_shares_the_objects_not_the_freeze() -> None:
    config = AppConfig(settings())
    config.freeze(worker=True)
    shared = config.sharing_declarations()
    assert shared.registry is config.registry and shared.hooks is config.hooks
    assert shared.periodic_jobs is config.periodic_jobs
    assert shared.middleware is config.middleware and shared.settings is config.settings
    assert (shared.in_use, shared.serving) == (False, False)


def test_the_memory_store_is_made_once_even_from_many_threads() -> None:
    runtime: AppRuntime[object] = AppRuntime(settings(backend="memory"))
    stores = []
    barrier = threading.Barrier(8)

    def get() -> None:
        barrier.wait()
        stores.append(runtime.memory_store())

    threads = [threading.Thread(target=get) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(stores) == 8 and all(store is stores[0] for store in stores)


def test_a_successor_keeps_the_memory_store_only_on_memory() -> None:
    runtime: AppRuntime[object] = AppRuntime(settings(backend="memory"))
    store = runtime.memory_store()
    runtime.plans[("key",)] = object()  # type: ignore[assignment]
    same_kind = runtime.successor(settings(backend="memory", priority=5))
    assert same_kind.memory_store() is store
    assert same_kind.plans == {} and same_kind.backend is None and not same_kind.ready
    assert same_kind.settings.priority == 5
    elsewhere = runtime.successor(settings(database_url="postgresql://h/db"))
    assert elsewhere.kind == "postgres"
    back = elsewhere.successor(settings(backend="memory"))
    assert back.memory_store() is not store  # left memory: its jobs are gone


def test_the_plan_cache_starts_over_when_full() -> None:
    runtime: AppRuntime[object] = AppRuntime(settings())
    plan = object()
    for n in range(MAX_PLANS + 1):
        runtime.remember((n,), plan)  # type: ignore[arg-type]
    assert len(runtime.plans) == MAX_PLANS + 1
    runtime.remember(("one more",), plan)  # type: ignore[arg-type]
    assert list(runtime.plans) == [("one more",)]


def test_the_registry_and_hooks_objects_are_replaceable_until_a_worker_starts() -> None:
    config = AppConfig(settings())
    config.freeze()  # in use, no worker: still replaceable
    other = AppConfig(settings())
    config.set_registry(other.registry)
    config.set_hooks(other.hooks)
    assert config.registry is other.registry and config.hooks is other.hooks
    config.freeze(worker=True)
    for part, replace in (
        ("registry", lambda: config.set_registry(AppConfig(settings()).registry)),
        ("hooks", lambda: config.set_hooks({event: [] for event in HOOK_EVENTS})),
    ):
        with pytest.raises(SoniqError) as caught:
            replace()
        assert caught.value.code == APP_FROZEN and caught.value.details == {"part": part}
    assert config.registry is other.registry and config.hooks is other.hooks
