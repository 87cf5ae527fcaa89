"""Job middleware: async functions wrapped round every handler call.

``@app.middleware`` registers ``async def mw(ctx, call_next)``. The worker calls the
first registered one with the job's :class:`~soniq.types.JobContext`; ``await
call_next()`` runs the next one, and the last one's ``call_next`` runs the handler (a
sync handler in the worker's threads, as without middleware). What a middleware
returns is the job's result; what it raises is the job's failure.

The worker composes each task's chain once (:func:`build_chain`), not per job, and
skips all of this when no middleware is registered.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from soniq.errors import INVALID_MIDDLEWARE, SoniqError

if TYPE_CHECKING:
    from soniq.types import JobContext

__all__ = ["CallNext", "Chain", "Middleware", "build_chain", "check_middleware"]

#: What a middleware awaits to run the rest of the chain and the handler.
CallNext = Callable[[], Awaitable[Any]]
#: ``async def mw(ctx, call_next) -> result``.
Middleware = Callable[["JobContext", CallNext], Awaitable[Any]]
#: A composed chain: called with the job's context and the handler's keyword arguments.
Chain = Callable[["JobContext", dict[str, Any]], Awaitable[Any]]


def check_middleware(func: object) -> Middleware:
    """``func`` if it can be a middleware (an ``async def`` taking ``ctx, call_next``),
    else ``SONIQ_INVALID_MIDDLEWARE``."""
    target = func
    if not inspect.isfunction(func) and not inspect.ismethod(func) and callable(func):
        target = getattr(func, "__call__", func)  # noqa: B004 - an instance's async __call__
    if not callable(func) or not inspect.iscoroutinefunction(target):
        raise SoniqError(
            INVALID_MIDDLEWARE,
            f"Middleware must be an async function `async def mw(ctx, call_next)`, got "
            f"{func!r}. Write it with `async def` and `return await call_next()`; a sync "
            "handler is still fine inside it (call_next runs it in a thread).",
        )
    try:
        inspect.signature(target).bind(None, None)
    except (TypeError, ValueError):
        raise SoniqError(
            INVALID_MIDDLEWARE,
            f"Middleware {getattr(func, '__qualname__', func)!r} must take two positional "
            "arguments, (ctx, call_next).",
        ) from None
    return func


def build_chain(middleware: Sequence[Middleware], handler: Chain) -> Chain:
    """Compose ``middleware`` round ``handler``; the first one is the outermost."""
    chain = handler
    for layer in reversed(middleware):
        chain = _wrap(layer, chain)
    return chain


def _wrap(layer: Middleware, inner: Chain) -> Chain:
    async def step(ctx: JobContext, kwargs: dict[str, Any]) -> Any:
        return await layer(ctx, lambda: inner(ctx, kwargs))

    return step
