"""Generate the blocking ``soniq_sync`` modules from the async core's source.

    python tools/async_to_sync.py           # rewrite the generated files
    python tools/async_to_sync.py --check   # fail if any is stale; CI runs this

Each source in ``SOURCES`` is rewritten token by token by ``Unasync`` and written
to its target (under ``src/soniq_sync/``, or ``tests/behaviour/sync/`` for the
behaviour suite's blocking side): coroutines become functions, ``await x`` becomes ``x``,
``async with``/``async for`` lose their ``async``, and names follow the tables below.
Then ruff drops the imports the rewrite left unused, sorts them and formats the file;
only the ruff version pinned in ``pyproject.toml`` may do that, so that the output does
not depend on whoever ran the tool.

The sources use no ``asyncio`` of their own: the few primitives they need (a lock...)
come from ``soniq._acompat``, whose hand-written blocking twin is ``soniq_sync._acompat``.

The check fails on a stale file, on a generated file (known by its header) that no
entry of ``SOURCES`` produces any more, on a rule of the tables that no source uses,
on a source that uses ``asyncio`` directly, and on any ``async`` or ``await`` left in
the output.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import importlib.metadata
import io
import re
import subprocess
import sys
import tokenize
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Async source -> generated blocking module.
SOURCES = {
    "src/soniq/adapters/base.py": "src/soniq_sync/adapters/base.py",
    "src/soniq/adapters/for_psycopg.py": "src/soniq_sync/adapters/for_psycopg.py",
    "src/soniq/adapters/for_sqlalchemy.py": "src/soniq_sync/adapters/for_sqlalchemy.py",
    "src/soniq/storage/backend.py": "src/soniq_sync/storage/backend.py",
    "src/soniq/storage/local.py": "src/soniq_sync/storage/local.py",
    "src/soniq/storage/factory.py": "src/soniq_sync/storage/factory.py",
    "src/soniq/storage/migrations.py": "src/soniq_sync/storage/migrations.py",
    "src/soniq/storage/store.py": "src/soniq_sync/storage/store.py",
    "src/soniq/storage/area.py": "src/soniq_sync/storage/area.py",
    "src/soniq/storage/jobs.py": "src/soniq_sync/storage/jobs.py",
    "src/soniq/storage/completion.py": "src/soniq_sync/storage/completion.py",
    "src/soniq/storage/dead_letters.py": "src/soniq_sync/storage/dead_letters.py",
    "src/soniq/storage/schedules.py": "src/soniq_sync/storage/schedules.py",
    "src/soniq/storage/workers.py": "src/soniq_sync/storage/workers.py",
    "src/soniq/storage/tasks.py": "src/soniq_sync/storage/tasks.py",
    "src/soniq/storage/queues.py": "src/soniq_sync/storage/queues.py",
    "src/soniq/storage/limits.py": "src/soniq_sync/storage/limits.py",
    "src/soniq/ops/queues.py": "src/soniq_sync/ops/queues.py",
    "src/soniq/ops/limits.py": "src/soniq_sync/ops/limits.py",
    "src/soniq/ops/dead_letter.py": "src/soniq_sync/ops/dead_letter.py",
    "src/soniq/recurring/service.py": "src/soniq_sync/recurring/service.py",
    "src/soniq/ops/retention.py": "src/soniq_sync/ops/retention.py",
    "src/soniq/storage/webhooks.py": "src/soniq_sync/storage/webhooks.py",
    "src/soniq/webhooks/transport.py": "src/soniq_sync/webhooks/transport.py",
    "src/soniq/webhooks/service.py": "src/soniq_sync/webhooks/service.py",
    "src/soniq/waiting/handle.py": "src/soniq_sync/waiting/handle.py",
    "src/soniq/app.py": "src/soniq_sync/app.py",
    # The behaviour suite's blocking side; tests/behaviour/sync/conftest.py gives the
    # same fixture names blocking apps.
    "tests/behaviour/test_batch_errors.py": "tests/behaviour/sync/test_batch_errors.py",
    "tests/behaviour/test_builtin_error_types.py": (
        "tests/behaviour/sync/test_builtin_error_types.py"
    ),
    "tests/behaviour/test_dead_letter.py": "tests/behaviour/sync/test_dead_letter.py",
    "tests/behaviour/test_enqueue.py": "tests/behaviour/sync/test_enqueue.py",
    "tests/behaviour/test_errors.py": "tests/behaviour/sync/test_errors.py",
    "tests/behaviour/test_limits.py": "tests/behaviour/sync/test_limits.py",
    "tests/behaviour/test_scheduler.py": "tests/behaviour/sync/test_scheduler.py",
    "tests/behaviour/test_task_names.py": "tests/behaviour/sync/test_task_names.py",
    "tests/behaviour/test_testing_helpers.py": "tests/behaviour/sync/test_testing_helpers.py",
    "tests/behaviour/test_snooze.py": "tests/behaviour/sync/test_snooze.py",
    "tests/behaviour/test_parity.py": "tests/behaviour/sync/test_parity.py",
}

#: Identifiers (names, attributes, imported names, definitions) to rename.
NAMES = {
    "AsyncAdapter": "SyncAdapter",
    "PsycopgAsyncAdapter": "PsycopgAdapter",
    "SQLAlchemyAsyncAdapter": "SQLAlchemyAdapter",
    "async_adapter": "sync_adapter",
    # The blocking app's base adds blocking worker methods (which run the async worker).
    "AppBase": "SyncAppBase",
    "AsyncConnection": "Connection",
    "AsyncConnectionPool": "ConnectionPool",
    "AbstractAsyncContextManager": "AbstractContextManager",
    "asynccontextmanager": "contextmanager",
    "AsyncIterator": "Iterator",
    # httpx's blocking client (soniq.webhooks.transport).
    "AsyncClient": "Client",
    "aiter_bytes": "iter_bytes",
    "__aenter__": "__enter__",
    "__aexit__": "__exit__",
}

#: Modules whose blocking twin is generated (or hand-written) in soniq_sync.
MODULES = {
    # The concurrency primitives: explicit twins instead of renaming asyncio.
    "soniq._acompat": "soniq_sync._acompat",
    "soniq.app_base": "soniq_sync.app_base",
    "soniq.adapters": "soniq_sync.adapters",
    "soniq.adapters.base": "soniq_sync.adapters.base",
    "soniq.storage.backend": "soniq_sync.storage.backend",
    "soniq.storage.local": "soniq_sync.storage.local",
    "soniq.storage.factory": "soniq_sync.storage.factory",
    "soniq.storage.migrations": "soniq_sync.storage.migrations",
    "soniq.storage.store": "soniq_sync.storage.store",
    "soniq.storage.area": "soniq_sync.storage.area",
    "soniq.storage.jobs": "soniq_sync.storage.jobs",
    "soniq.storage.dead_letters": "soniq_sync.storage.dead_letters",
    "soniq.storage.schedules": "soniq_sync.storage.schedules",
    "soniq.storage.workers": "soniq_sync.storage.workers",
    "soniq.storage.tasks": "soniq_sync.storage.tasks",
    "soniq.storage.webhooks": "soniq_sync.storage.webhooks",
    "soniq.webhooks.transport": "soniq_sync.webhooks.transport",
    "soniq.webhooks.service": "soniq_sync.webhooks.service",
    "soniq.ops.dead_letter": "soniq_sync.ops.dead_letter",
    "soniq.ops.queues": "soniq_sync.ops.queues",
    "soniq.ops.limits": "soniq_sync.ops.limits",
    "soniq.storage.queues": "soniq_sync.storage.queues",
    "soniq.storage.limits": "soniq_sync.storage.limits",
    "soniq.ops.retention": "soniq_sync.ops.retention",
    "soniq.recurring.service": "soniq_sync.recurring.service",
    # The blocking hub of waits is hand-written (a thread running the async one).
    "soniq.waiting.hub": "soniq_sync.waiting.hub",
    "soniq.waiting.handle": "soniq_sync.waiting.handle",
    # For the tests: the public app and its test helpers.
    "soniq": "soniq_sync",
    "soniq.testing": "soniq_sync.testing",
}

#: Generic types whose blocking form is their last argument: Awaitable[T] -> T.
UNWRAP = {"Awaitable"}

#: Words in docstrings and messages.
TEXT = {
    "async with ": "with ",
    "await ": "",
    "AsyncConnection": "Connection",
    "AsyncSession": "Session",
    "asyncio extension": "ORM",
}

#: Definitions (``Class.method`` or a top-level name, in any source or, after
#: ``path::``, in that one) and imports that stay async-only.
DROP = {
    "Soniq.worker",
    "Soniq.run_worker",
    # The in-process scheduler runs on an event loop; SyncAppBase has its own.
    "Soniq._scheduler_runner",
    # The scheduler process is async-only.
    "tests/behaviour/test_scheduler.py::fire_when_due",
    "tests/behaviour/test_scheduler.py::test_a_due_every_schedule_enqueues_exactly_one_job",
    "tests/behaviour/test_task_names.py::fire",
    "tests/behaviour/test_task_names.py::test_a_stored_schedule_fires_under_its_module_derived_name",
}
DROP_IMPORTS = {"soniq.worker"}

HEADER = (
    "# WARNING: generated by tools/async_to_sync.py from {source}.\n"
    "# Do not edit: change the async source and run `python tools/async_to_sync.py`.\n"
)
#: The header's first line, which marks a file as generated (see ``orphans``).
_HEADER_RE = re.compile(r"# WARNING: generated by tools/async_to_sync\.py from (\S+)\.\n")

#: Folders searched for generated files that no source produces any more.
OUTPUT_ROOTS = ("src", "tests")

#: The ruff requirement in ``pyproject.toml``, which fixes the formatter's version.
_RUFF_PIN_RE = re.compile(r'"ruff==([^"\s;]+)"')

_TEXT_RE = re.compile("|".join(re.escape(k) for k in sorted(TEXT, key=len, reverse=True)))


class Unasync:
    """Rewrites one async module's text into its blocking twin, counting rule use.

    Edits are made on tokens, so comments, blank lines and strings keep the source's
    layout; the syntax tree only tells which definitions to drop.
    """

    def __init__(self, source: str, used: Counter[str], path: str = "") -> None:
        self.source = source
        self.path = path
        self.used = used
        self.lines = source.splitlines(keepends=True)
        self._offsets = [0]
        for line in self.lines:
            self._offsets.append(self._offsets[-1] + len(line))
        # (start offset, end offset, replacement)
        self.edits: list[tuple[int, int, str]] = []

    def convert(self) -> str:
        """The rewritten text (before ruff tidies it)."""
        tree = ast.parse(self.source)
        self._module_docstring(tree)
        self._drops(tree)
        replaced = list(self.edits)  # whole lines: their tokens need no edits
        self._tokens()
        self.edits = replaced + [
            edit
            for edit in self.edits[len(replaced) :]
            if not any(start <= edit[0] < end for start, end, _ in replaced)
        ]
        text = self.source
        for start, end, new in sorted(self.edits, reverse=True):
            text = text[:start] + new + text[end:]
        return text

    def _at(self, row: int, col: int) -> int:
        return self._offsets[row - 1] + col

    def _replace_lines(self, first: int, last: int, new: str = "") -> None:
        self.edits.append((self._offsets[first - 1], self._offsets[last], new))

    def _module_docstring(self, tree: ast.Module) -> None:
        # Keep the first paragraph: the rest is about the async source.
        first = tree.body[0] if tree.body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
            summary = self._text(str(first.value.value).split("\n\n")[0].strip())
            assert first.end_lineno is not None
            self._replace_lines(first.lineno, first.end_lineno, f'"""{summary}"""\n')

    def _drops(self, tree: ast.Module) -> None:
        def walk(body: list[ast.stmt], scope: list[str]) -> None:
            for node in body:
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    qualname = ".".join([*scope, node.name])
                    rule = next(
                        (r for r in (qualname, f"{self.path}::{qualname}") if r in DROP), None
                    )
                    if rule is not None:
                        self.used[f"drop:{rule}"] += 1
                        first = min([d.lineno for d in node.decorator_list] + [node.lineno])
                        assert node.end_lineno is not None
                        self._replace_lines(first, node.end_lineno)
                    elif isinstance(node, ast.ClassDef):
                        walk(node.body, [*scope, node.name])
                elif isinstance(node, ast.If) and all(_dropped_import(n) for n in node.body):
                    for n in node.body:
                        self.used[f"drop-import:{getattr(n, 'module', '')}"] += 1
                    assert node.end_lineno is not None
                    self._replace_lines(node.lineno, node.end_lineno)
                elif _dropped_import(node):
                    self.used[f"drop-import:{getattr(node, 'module', '')}"] += 1
                    assert node.end_lineno is not None
                    self._replace_lines(node.lineno, node.end_lineno)

        walk(tree.body, [])

    def _tokens(self) -> None:
        tokens = [
            tok
            for tok in tokenize.generate_tokens(io.StringIO(self.source).readline)
            if tok.type not in (tokenize.NL, tokenize.COMMENT)
        ]
        i = 0
        while i < len(tokens):
            tok = tokens[i]
            start = self._at(*tok.start)
            end = self._at(*tok.end)
            if tok.type == tokenize.NAME and tok.string in ("async", "await"):
                # The keyword and the space after it.
                self.edits.append((start, self._at(*tokens[i + 1].start), ""))
            elif tok.type == tokenize.NAME and tok.string == "from":
                i = self._module(tokens, i + 1)
                continue
            elif tok.type == tokenize.NAME and tok.string in UNWRAP:
                i = self._unwrap(tokens, i)
                continue
            elif tok.type == tokenize.NAME and tok.string in NAMES:
                self.used[f"name:{tok.string}"] += 1
                self.edits.append((start, end, NAMES[tok.string]))
            elif tok.type == tokenize.STRING:
                new = self._text(tok.string)
                if new != tok.string:
                    self.edits.append((start, end, new))
            i += 1

    def _module(self, tokens: list[tokenize.TokenInfo], i: int) -> int:
        """Rename the dotted module after ``from``; return the index after it."""
        j = i
        while j < len(tokens) and (tokens[j].type == tokenize.NAME or tokens[j].string == "."):
            if tokens[j].string == "import":
                break
            j += 1
        dotted = "".join(tok.string for tok in tokens[i:j])
        if dotted in MODULES:
            self.used[f"module:{dotted}"] += 1
            start, end = self._at(*tokens[i].start), self._at(*tokens[j - 1].end)
            self.edits.append((start, end, MODULES[dotted]))
        return j

    def _unwrap(self, tokens: list[tokenize.TokenInfo], i: int) -> int:
        """``Awaitable[T]`` -> ``T``: drop the name and its brackets."""
        if i + 1 >= len(tokens) or tokens[i + 1].string != "[":
            return i + 1
        depth, j = 0, i + 1
        while True:
            depth += {"[": 1, "]": -1}.get(tokens[j].string, 0)
            if depth == 0:
                break
            j += 1
        self.used[f"unwrap:{tokens[i].string}"] += 1
        self.edits.append((self._at(*tokens[i].start), self._at(*tokens[i + 1].end), ""))
        self.edits.append((self._at(*tokens[j].start), self._at(*tokens[j].end), ""))
        return i + 2  # the contents are converted like any other tokens

    def _text(self, text: str) -> str:
        def swap(match: re.Match[str]) -> str:
            self.used[f"text:{match.group(0)}"] += 1
            return TEXT[match.group(0)]

        return _TEXT_RE.sub(swap, text)


def _dropped_import(node: ast.stmt) -> bool:
    return isinstance(node, ast.ImportFrom) and node.module in DROP_IMPORTS


def convert(source: str, source_path: str, target_path: str, used: Counter[str]) -> str:
    """The generated module for one async source, formatted as it is stored."""
    code = HEADER.format(source=source_path) + "\n" + Unasync(source, used, source_path).convert()
    # SIM117: a ``with`` around what was an ``async with`` nests two plain ones now.
    fixes = ["check", "--fix", "--select", "F401,I,SIM117,UP034", "--exit-zero", "--quiet"]
    return _ruff(["format", "--quiet"], _ruff(fixes, code, target_path), target_path)


def _ruff(args: list[str], code: str, path: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "ruff", *args, "--stdin-filename", path, "-"],
        input=code,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"ruff {args[0]} failed on {path}:\n{done.stderr}")
    return done.stdout


def leftover_async(code: str) -> list[int]:
    """Lines where ``async`` or ``await`` is still code (not text in a string)."""
    tokens = tokenize.generate_tokens(io.StringIO(code).readline)
    return [
        tok.start[0]
        for tok in tokens
        if tok.type == tokenize.NAME and tok.string in ("async", "await")
    ]


def direct_asyncio(source: str) -> list[int]:
    """Lines of an async source that use ``asyncio`` itself (not text in a string).

    Its blocking twin would need a hand-picked replacement: take the primitive from
    ``soniq._acompat`` instead, which the generator maps to ``soniq_sync._acompat``.
    """
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return sorted(
        {tok.start[0] for tok in tokens if tok.type == tokenize.NAME and tok.string == "asyncio"}
    )


def orphans(root: Path, targets: set[str]) -> dict[str, str]:
    """Generated files under ``OUTPUT_ROOTS`` that no target names: path -> its source.

    A file is generated if it starts with the header; one whose source left
    ``SOURCES`` would otherwise stay behind, never checked again.
    """
    found: dict[str, str] = {}
    for folder in OUTPUT_ROOTS:
        for path in sorted((root / folder).rglob("*.py")):
            with path.open(encoding="utf-8") as file:
                match = _HEADER_RE.fullmatch(file.readline())
            relative = path.relative_to(root).as_posix()
            if match and relative not in targets:
                found[relative] = match.group(1)
    return found


def pinned_ruff(root: Path) -> str:
    """The ruff version that ``pyproject.toml`` pins (``ruff==X`` in the dev extra)."""
    match = _RUFF_PIN_RE.search((root / "pyproject.toml").read_text(encoding="utf-8"))
    if match is None:
        raise SystemExit("pyproject.toml pins no ruff version (`ruff==X` in the dev extra)")
    return match.group(1)


def installed_ruff() -> str:
    """The version of the ruff that this Python runs."""
    try:
        return importlib.metadata.version("ruff")
    except importlib.metadata.PackageNotFoundError:
        return "none"


def check_ruff(root: Path) -> None:
    """Refuse to run with another ruff than the pinned one: its output would differ."""
    pinned, installed = pinned_ruff(root), installed_ruff()
    if installed != pinned:
        raise SystemExit(
            f"tools/async_to_sync.py formats its output with ruff=={pinned} (pinned in "
            f"pyproject.toml), but this environment has ruff {installed}; "
            f"run `pip install ruff=={pinned}` (or `pip install -e '.[dev]'`) first"
        )


def unused_rules(used: Counter[str]) -> list[str]:
    """Rules of the tables above that no source needed: stale rules hide mistakes."""
    rules = [f"name:{n}" for n in NAMES] + [f"module:{m}" for m in MODULES]
    rules += [f"unwrap:{n}" for n in UNWRAP] + [f"text:{t}" for t in TEXT]
    rules += [f"drop:{d}" for d in DROP] + [f"drop-import:{m}" for m in DROP_IMPORTS]
    return [rule for rule in rules if not used[rule]]


def main(argv: list[str] | None = None) -> int:
    """Regenerate, or with ``--check`` compare; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail on stale output")
    opts = parser.parse_args(argv)
    check_ruff(ROOT)
    used: Counter[str] = Counter()
    problems: list[str] = []
    for source_path, target_path in SOURCES.items():
        source = (ROOT / source_path).read_text(encoding="utf-8")
        for line in direct_asyncio(source):
            problems.append(
                f"{source_path}:{line}: uses asyncio directly; import the primitive from "
                "soniq._acompat (add it there, with its blocking twin in soniq_sync._acompat)"
            )
        code = convert(source, source_path, target_path, used)
        for line in leftover_async(code):
            problems.append(f"{target_path}:{line}: async/await left after conversion")
        target = ROOT / target_path
        current = target.read_text(encoding="utf-8") if target.exists() else ""
        if current == code:
            continue
        if opts.check:
            diff = difflib.unified_diff(
                current.splitlines(keepends=True),
                code.splitlines(keepends=True),
                f"{target_path} (on disk)",
                f"{target_path} (from {source_path})",
            )
            problems.append(f"{target_path} is stale:\n{''.join(diff)}")
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(code, encoding="utf-8")
            print(f"wrote {target_path}")
    for path, source_path in orphans(ROOT, set(SOURCES.values())).items():
        problems.append(
            f"{path} is generated (from {source_path}) but no SOURCES entry makes it: "
            "delete it, or add its source to SOURCES"
        )
    problems += [f"unused rule {rule}" for rule in unused_rules(used)]
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems and opts.check:
        print("run `python tools/async_to_sync.py` and commit the result", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
