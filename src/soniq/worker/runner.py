"""Running one claimed job and deciding what happens to it next."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import math
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from concurrent.futures import Executor
from typing import Any

from pydantic import ValidationError

from soniq.core.limits import RateLimited
from soniq.core.middleware import Chain, Middleware, build_chain
from soniq.core.registry import JobRegistry, JobSpec
from soniq.core.retry import RetryPolicy
from soniq.observability.log_context import current_job_fields
from soniq.storage.records import ClaimedJob as ClaimedJob  # re-export: it moved to storage
from soniq.types import (
    JobContext,
    ProgressReport,
    Snooze,
    bind_completion,
    report_progress,
    watch_cancel_requests,
)
from soniq.worker.completion import Completions
from soniq.worker.deadlines import Deadlines, Stop
from soniq.worker.outcomes import (
    CANCELLED,
    Bury,
    Cancelled,
    Done,
    Outcome,
    Requeue,
    Retry,
    failure_outcome,
)
from soniq.worker.result_json import returned_json
from soniq.worker.retry import next_delay

# The outcomes are re-exported for the modules that import them from here.
__all__ = [
    "CANCELLED",
    "Bury",
    "Cancelled",
    "ClaimedJob",
    "Done",
    "HandlerExit",
    "JobRunner",
    "JobTimeout",
    "Outcome",
    "Requeue",
    "Retry",
    "run_hooks",
]

logger = logging.getLogger("soniq.worker")


_DONE_WITHOUT_RESULT = Done(None)
Hook = Callable[..., Any]


#: What a hook may raise without stopping the job or the worker: any exception, and
#: the exits that would otherwise end the worker's event loop. (A CancelledError is
#: left alone: a shutdown can arrive while a hook runs.)
_HOOK_FAILURES = (Exception, SystemExit, KeyboardInterrupt, GeneratorExit)


async def run_hooks(event: str, hooks: Sequence[Hook], *args: Any) -> None:
    """Call each hook in order; a failing hook is logged and never stops the job."""
    for hook in hooks:
        try:
            result = hook(*args)
            if result is not None and inspect.isawaitable(result):
                await result
        except _HOOK_FAILURES as exc:
            logger.warning(
                "Hook %s failed: %r", event, exc, extra={"hook": event, **current_job_fields()}
            )


class JobRunner:
    """Runs handlers for one worker: context, hooks, timeout, result, outcome."""

    def __init__(
        self,
        registry: JobRegistry,
        hooks: Mapping[str, Sequence[Hook]],
        *,
        default_timeout: float | None,
        snooze_max: float = 86400.0,
        worker_id: str,
        executor: Executor,
        deadlines: Deadlines,
        on_failure: Callable[[BaseException], None] | None = None,
        cancel_requests: AbstractSet[str] = frozenset(),
        middleware: Sequence[Middleware] = (),
        retry_policy: RetryPolicy | None = None,
        completions: Completions | None = None,
        progress: ProgressReport | None = None,
    ) -> None:
        self.registry = registry
        self.before = list(hooks.get("before_job", ()))
        self.after = list(hooks.get("after_job", ()))
        self.on_error = list(hooks.get("on_error", ()))
        self.default_timeout = default_timeout
        #: The longest a snooze may put a job off (SONIQ_SNOOZE_MAX_SECONDS).
        self.snooze_max = snooze_max
        self.worker_id = worker_id
        self.executor = executor
        self.deadlines = deadlines
        #: Told of each handler's exception (the instruments record it on the span).
        self.on_failure = on_failure
        #: Ids of the worker's jobs whose cancellation was requested (the worker's set).
        self.cancel_requests = cancel_requests
        #: The app's middleware, outermost first; empty (the usual case) costs nothing.
        self.middleware = tuple(middleware)
        # Each task's composed chain, with the spec it was built for: built here for the
        # tasks registered now, on first use for any registered later.
        self._chains: dict[str, tuple[JobSpec, Chain]] = {}
        if self.middleware:
            for name in registry.names():
                spec = registry.get(name)
                if spec is not None:
                    self._chain(spec)
        #: The app's retry policy; None: each job's own retry options decide.
        self.retry_policy = retry_policy
        #: Completion in the handler's transaction (PostgreSQL), else None.
        self.completions = completions
        #: Where ``ctx.progress`` reports go (the worker's progress writer); None: the
        #: contexts refuse them, as hand-built ones do.
        self.progress = progress

    async def run(self, job: ClaimedJob) -> Outcome:
        """Run ``job`` once and say what should happen to its row."""
        spec = self.registry.get(job.job_name)
        if spec is None:
            return Bury(f"Job {job.job_name} not registered.")
        kwargs: dict[str, Any] = dict(job.args)
        if spec.args_model is not None:
            try:
                kwargs = dict(spec.args_model.model_validate(job.args))
            except ValidationError as exc:
                return Bury(f"Arguments failed {spec.args_model.__name__}: {exc}")
            except Exception as exc:  # a validator raising TypeError etc. is not wrapped
                return Bury(
                    f"Arguments failed {spec.args_model.__name__}: {exc!r}",
                    f"{type(exc).__name__}: {exc}",
                    _trace(exc),
                )
        if spec.transactional and self.completions is None:
            return Bury(
                f"Job {job.job_name} is transactional, and only a PostgreSQL worker can "
                "commit it with its handler's writes."
            )
        ctx: JobContext | None = None
        if spec.context_param is not None or self.middleware or spec.transactional:
            ctx = self._context(job)
            if spec.context_param is not None:
                kwargs[spec.context_param] = ctx

        if self.before:
            await run_hooks("before_job", self.before, job.job_name, job.id, job.attempt)
        # A request that came before the handler started (the job waited for a slot,
        # or a hook was running): don't start it. From here on, the worker interrupts
        # an async handler through the deadlines watchdog (see Worker._cancel_request).
        if self.cancel_requests and job.id in self.cancel_requests:
            return CANCELLED
        started = time.perf_counter()
        failure: Exception | None = None
        result: Any = None
        try:
            result = await self._call(spec, kwargs, ctx)
        except Exception as exc:
            failure = exc
        completion = None if ctx is None else ctx._completion
        if completion is not None:
            completion.open = False
            if completion.began:
                # The handler completed the job in a transaction: what that transaction
                # did, not what the handler returned or raised, decides.
                if completion.committed and failure is None:
                    state = "done"  # Soniq's own COMMIT returned: nothing to ask
                else:
                    state = await self.completions.settled(job)  # type: ignore[union-attr]
                if state == "done":
                    if failure is not None:
                        logger.info(
                            "job %s raised after its transaction committed it done: %r",
                            job.job_name,
                            failure,
                            extra=job.log_extra(),
                        )
                    await self._after(job, started)
                    return Done(completion.result, committed=True)
                if state == "lost":
                    return Requeue(0.0)  # fenced out: its write is dropped
                if failure is None:
                    failure = NotCommitted()
        if failure is None and isinstance(result, Snooze):
            failure = result
        if failure is not None:
            return await self._failure(job, spec, kwargs, failure)
        await self._after(job, started)
        if result is None:
            return _DONE_WITHOUT_RESULT
        return Done(returned_json(result, job.job_name, job.log_extra()))

    async def _after(self, job: ClaimedJob, started: float) -> None:
        if self.after:
            duration_ms = (time.perf_counter() - started) * 1000.0
            await run_hooks("after_job", self.after, job.job_name, job.id, duration_ms)

    async def _failure(
        self, job: ClaimedJob, spec: JobSpec, kwargs: dict[str, Any], failure: Exception
    ) -> Outcome:
        """The outcome of a handler that raised (or returned) ``failure``."""
        if isinstance(failure, Snooze):
            # (A snooze after a cancel request ends cancelled: see snooze_job.)
            return Requeue(failure.delay(self.snooze_max), error=failure.last_error)
        if isinstance(failure, RateLimited):
            delay = min(failure.retry_after, self.snooze_max)
            note = f"RATE_LIMITED: retry after {delay:g}s" + (
                f": {failure.reason}" if failure.reason else ""
            )
            return Requeue(delay, error=note, block=delay)
        return await self._failed(job, spec, kwargs, failure)

    def _context(self, job: ClaimedJob) -> JobContext:
        ctx = JobContext(
            job_id=job.id,
            job_name=job.job_name,
            attempt=job.attempt,
            max_attempts=job.max_attempts,
            queue=job.queue,
            worker_id=self.worker_id,
            scheduled_at=job.scheduled_at,
            created_at=job.created_at,
        )
        if self.completions is not None:
            bind_completion(ctx, self.completions.new(job))
        if self.progress is not None:
            report_progress(ctx, self.progress)
        return watch_cancel_requests(ctx, self.cancel_requests)

    def _chain(self, spec: JobSpec) -> Chain:
        """``spec``'s middleware chain, composed once per spec."""
        cached = self._chains.get(spec.name)
        if cached is not None and cached[0] is spec:
            return cached[1]
        chain = build_chain(self.middleware, self._handler_call(spec))
        self._chains[spec.name] = (spec, chain)
        return chain

    def _handler_call(self, spec: JobSpec) -> Chain:
        """The innermost ``call_next``: the handler, a sync one in the worker's threads."""
        if spec.is_async:

            async def call_async(ctx: JobContext, kwargs: dict[str, Any]) -> Any:
                return await self._body(spec, ctx)(**kwargs)

            return call_async
        executor = self.executor

        async def call_sync(ctx: JobContext, kwargs: dict[str, Any]) -> Any:
            loop = asyncio.get_running_loop()
            started: asyncio.Future[None] = loop.create_future()
            func = self._body(spec, ctx)
            return await loop.run_in_executor(
                executor, contextvars.copy_context().run, _run_sync, loop, started, func, kwargs
            )

        return call_sync

    def _body(self, spec: JobSpec, ctx: JobContext | None) -> Callable[..., Any]:
        """What runs the handler: itself, or itself inside the transaction that a
        transactional job's completion commits in."""
        if not spec.transactional or ctx is None or self.completions is None:
            return spec.func
        return self.completions.around(spec, ctx._completion)

    async def _call(
        self, spec: JobSpec, kwargs: dict[str, Any], ctx: JobContext | None = None
    ) -> Any:
        timeout = spec.timeout if spec.timeout is not None else self.default_timeout
        if ctx is not None and self.middleware:
            # The whole chain runs under the deadline, from the first middleware's start.
            work: Awaitable[Any] = self._chain(spec)(ctx, kwargs)
        elif spec.is_async:
            work = self._body(spec, ctx)(**kwargs)
        else:
            loop = asyncio.get_running_loop()
            started: asyncio.Future[None] = loop.create_future()
            # In a copy of this task's context: the handler's logs and spans then belong
            # to the job (soniq.observability.log_context, the job's trace span).
            work = loop.run_in_executor(
                self.executor,
                contextvars.copy_context().run,
                _run_sync,
                loop,
                started,
                self._body(spec, ctx),
                kwargs,
            )
            # The timeout counts from the handler's start, not from the wait for a
            # free thread (a timed-out sync handler keeps its thread until it returns).
            await asyncio.wait([started, work], return_when=asyncio.FIRST_COMPLETED)
        task = asyncio.current_task()
        if task is None:
            return await work
        # Armed even without a timeout: the watchdog's armed tasks are the handlers a
        # cancel request or a shutdown may interrupt.
        token = self.deadlines.arm(task, math.inf if timeout is None else timeout)
        try:
            result = await work
        except BaseException as exc:
            stop = self.deadlines.disarm(task, token)
            if isinstance(exc, asyncio.CancelledError):
                if stop is Stop.INTERRUPTED:
                    raise  # a shutdown or a cancel request: the worker's own
                if stop is Stop.TIMED_OUT:
                    if sys.version_info >= (3, 11):
                        task.uncancel()
                    raise JobTimeout(timeout or math.inf) from None
            if isinstance(exc, Exception):
                raise
            # SystemExit, KeyboardInterrupt, GeneratorExit, or a CancelledError the
            # worker did not ask for: the handler's own, a failure of this job like any
            # exception. (A running worker takes SIGINT and SIGTERM itself, so a real
            # signal never arrives here as a KeyboardInterrupt.)
            raise HandlerExit(exc) from None
        self.deadlines.disarm(task, token)
        return result

    async def _failed(
        self, job: ClaimedJob, spec: JobSpec, kwargs: dict[str, Any], failure: Exception
    ) -> Outcome:
        if self.cancel_requests and job.id in self.cancel_requests:
            # Raised (or timed out) after a cancel request: the job stopped as asked,
            # which is not a failure. No on_error, no retry.
            return CANCELLED
        exc = failure.exception if isinstance(failure, HandlerExit) else failure
        error = f"{type(exc).__name__}: {exc}"
        trace = _trace(exc)
        if self.on_failure is not None:
            self.on_failure(exc)
        await run_hooks("on_error", self.on_error, job.job_name, job.id, str(exc), job.attempt)
        if isinstance(exc, TypeError) and not _fits(spec, kwargs):
            # The arguments can never fit this handler: retrying would fail the same way.
            return Bury(f"Arguments do not fit {spec.func.__qualname__}: {exc}", error, trace)
        if getattr(exc, "retryable", True) is False:
            # The error says retrying cannot help (e.g. a webhook refused with a 4xx).
            return Bury(f"Not retryable: {error}", error, trace)
        delay = 0.0
        if job.attempt < job.max_attempts:
            decided = next_delay(self.retry_policy, spec, job, exc, error)
            if decided is None:
                reason = f"Retry policy gave up after attempt {job.attempt} of {job.max_attempts}."
                return Bury(reason, error, trace)
            delay = decided
        outcome = failure_outcome(
            job.attempt,
            job.max_attempts,
            error,
            delay=delay,
            reason=f"Failed all {job.max_attempts} attempts.",
            trace=trace,
        )
        if isinstance(outcome, Retry):
            logger.info(
                "job %s failed (attempt %d of %d), retrying: %s",
                job.job_name,
                job.attempt,
                job.max_attempts,
                error,
                extra=job.log_extra(),
            )
        return outcome


class NotCommitted(Exception):
    """The handler called ``ctx.complete`` and returned, but the transaction it
    completed in did not commit: the job is retried, never acknowledged without its
    effects."""

    def __init__(self) -> None:
        super().__init__("ctx.complete() ran in a transaction that did not commit")


class JobTimeout(TimeoutError):
    """A handler ran past its timeout."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"Job timed out after {seconds:g}s")


class HandlerExit(Exception):
    """Carries a handler's SystemExit, KeyboardInterrupt, GeneratorExit or its own
    CancelledError out of :meth:`JobRunner._call` as an ordinary failure.

    Left as they are, these would stop the worker's event loop (SystemExit,
    KeyboardInterrupt), or leave the job's row ``processing`` (GeneratorExit) or requeue
    it for ever (CancelledError, taken for a shutdown).
    """

    def __init__(self, exception: BaseException) -> None:
        super().__init__(f"{type(exception).__name__}: {exception}")
        self.exception = exception


def _run_sync(
    loop: asyncio.AbstractEventLoop,
    started: asyncio.Future[None],
    func: Callable[..., Any],
    kwargs: dict[str, Any],
) -> Any:
    loop.call_soon_threadsafe(_set_started, started)
    try:
        return func(**kwargs)
    except Exception:
        raise
    except BaseException as exc:
        # Wrapped here, in the thread: a GeneratorExit reaching the job's task through
        # the executor's future would be thrown into the task, closing the runner's
        # coroutines (its outcome lost) instead of raising where _call can catch it.
        raise HandlerExit(exc) from None


def _set_started(started: asyncio.Future[None]) -> None:
    if not started.done():
        started.set_result(None)


def _fits(spec: JobSpec, kwargs: dict[str, Any]) -> bool:
    try:
        spec.signature.bind(**kwargs)
    except TypeError:
        return False
    return True


def _trace(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
