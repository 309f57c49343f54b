"""The documentation cannot drift from the code.

Every fenced Python block of README.md and docs/**/*.md runs against a fake server on
127.0.0.1 (``DUMPLINGAI_API_KEY`` and ``DUMPLINGAI_API_URL`` point at it), the blocks of
one file in order and in one namespace, as a reader would type them. A block may use
top-level ``await``; it then runs inside the file's event loop with ``client``, an open
``AsyncDumplingClient()`` on the fake server, already defined. Functions named ``test_*``
that a block defines are called after it, as pytest would. The working directory is a
temporary one holding ``handles.txt``.

A block that cannot run (it needs a Redis server, a real key, or is a fragment) is
preceded by ``<!-- not run: REASON -->``; it is still compiled. A failure names the file
and line of the block.

The reference pages are checked too: every public name has its ``:::`` entry, every
``AsyncDumplingClient`` keyword its row, and the drawn error hierarchy matches the one
in ``dumpling_async/_errors.py``.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import logging
import re
import shlex
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest

import dumpling_async
import dumpling_async.redis
import dumpling_async.testing
from dumpling_async import AsyncDumplingClient
from dumpling_async.testing import FakeDumplingServer, RateLimitRule

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
DOC_FILES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
PYTHON = {"python", "py", "python3"}
BLOCK_TIMEOUT = 30.0

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
_NOT_RUN = re.compile(r"^\s*<!--\s*not run:(?P<reason>.*?)-->\s*$")
_MARKER_LIKE = re.compile(r"<!--\s*not[\s_-]*run", re.IGNORECASE)
_DIRECTIVE = re.compile(r"^:::\s+(?P<path>[\w.]+)\s*$", re.MULTILINE)
_COMMAND = re.compile(r"(?:^\s*|\|\s*)dumpling-async\s")
_LINK = re.compile(r"\[[^\]]*\]\((?P<target>[^)\s]+)\)")


@attrs.frozen
class Block:
    """One fenced code block: where it is, its language, its code and why it is skipped."""

    path: Path
    line: int  # the line of its first code line (1-based)
    lang: str
    code: str
    not_run: str | None  # the reason given, or None when it runs

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def parse_blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file, indented ones (in lists) included."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        end = i + 1
        while end < len(lines) and not (
            lines[end].strip().startswith(fence) and set(lines[end].strip()) == {fence[0]}
        ):
            end += 1
        body = [
            line[indent:] if line[:indent].strip() == "" else line for line in lines[i + 1 : end]
        ]
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        marker = _NOT_RUN.match(before)
        info = opening["info"].split()
        blocks.append(
            Block(
                path=path,
                line=i + 2,
                lang=info[0].lower() if info else "",
                code="\n".join(body) + "\n",
                not_run=marker["reason"].strip() if marker else None,
            )
        )
        i = end + 1
    return blocks


def python_blocks(path: Path) -> list[Block]:
    return [b for b in parse_blocks(path) if b.lang in PYTHON]


FILES_WITH_PYTHON = [p for p in DOC_FILES if python_blocks(p)]


def compile_block(block: Block) -> Any:
    """The block compiled with top-level await allowed, its line numbers the file's."""
    source = "\n" * (block.line - 1) + block.code
    return compile(source, str(block.path), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


@contextmanager
def logging_restored() -> Iterator[None]:
    """A block may configure logging (``basicConfig``); undo it for the other tests."""
    root, ours = logging.getLogger(), logging.getLogger("dumpling_async")
    saved = (list(root.handlers), root.level, list(ours.handlers), ours.level)
    try:
        yield
    finally:
        root.handlers[:], ours.handlers[:] = saved[0], saved[2]
        root.setLevel(saved[1])
        ours.setLevel(saved[3])


def _tests_defined(block: Block, namespace: dict[str, Any]) -> list[Callable[[], Any]]:
    last = block.line + block.code.count("\n")
    return [
        fn
        for name, fn in namespace.items()
        if name.startswith("test_")
        and inspect.isfunction(fn)
        and fn.__code__.co_filename == str(block.path)
        and block.line <= fn.__code__.co_firstlineno <= last
    ]


def _failure(block: Block, exc: BaseException) -> str:
    """The block's place and the traceback, without this runner's and asyncio's frames."""
    report = traceback.TracebackException.from_exception(exc)
    report.stack = traceback.StackSummary.from_list(
        [f for f in report.stack if f.filename != __file__ and "asyncio" not in f.filename]
    )
    return f"{block.where}: the Python block starting here failed\n" + "".join(report.format())


def run_blocks(blocks: list[Block]) -> None:
    """Run a file's runnable blocks in order, in one namespace and one event loop."""
    namespace: dict[str, Any] = {"__name__": "docs_example"}
    with asyncio.Runner() as runner, logging_restored():
        client = AsyncDumplingClient()  # from the environment: the fake server

        async def bounded(awaitable: Any) -> Any:
            async with asyncio.timeout(BLOCK_TIMEOUT):
                return await awaitable

        try:
            for block in blocks:
                if block.not_run is not None:
                    continue
                namespace["client"] = client
                failure = None
                try:
                    code = compile_block(block)
                    if code.co_flags & inspect.CO_COROUTINE:
                        runner.run(bounded(eval(code, namespace)))
                    else:
                        exec(code, namespace)
                    for test in _tests_defined(block, namespace):
                        result = test()
                        if inspect.isawaitable(result):
                            runner.run(bounded(result))
                except Exception as exc:
                    failure = _failure(block, exc)
                if failure is not None:
                    pytest.fail(failure, pytrace=False)
        finally:
            runner.run(client.aclose())


@pytest.mark.parametrize("path", FILES_WITH_PYTHON, ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_run(
    path: Path,
    serve: Callable[..., FakeDumplingServer],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Every runnable Python block of the file runs against the fake server."""
    server = serve(rate_limit=RateLimitRule(1000, 1.0))
    monkeypatch.setenv("DUMPLINGAI_API_KEY", "docs-example-key")
    monkeypatch.setenv("DUMPLINGAI_API_URL", server.url)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "handles.txt").write_text("stoolpresidente\n@Charlidamelio\nunknown_x\nscout2015\n")
    run_blocks(python_blocks(path))


def test_every_skipped_block_says_why_and_compiles() -> None:
    """A block marked not run gives a reason and is still valid Python."""
    problems = []
    for path in DOC_FILES:
        for block in python_blocks(path):
            if block.not_run is None:
                continue
            if len(block.not_run) < 8:
                problems.append(f"{block.where}: 'not run' needs a reason, got {block.not_run!r}")
            try:
                compile_block(block)
            except SyntaxError as exc:
                problems.append(f"{block.where}: not valid Python: {exc}")
    assert not problems, "\n".join(problems)


def test_not_run_markers_stand_before_python_blocks() -> None:
    """Every not-run comment is well formed and directly precedes a Python block."""
    problems = []
    for path in DOC_FILES:
        lines = path.read_text(encoding="utf-8").splitlines()
        starts = {b.line - 1 for b in python_blocks(path)}  # 1-based line of the fence
        for n, line in enumerate(lines, 1):
            if not (line.lstrip().startswith("<!--") and _MARKER_LIKE.search(line)):
                continue  # prose may mention the marker in backticks
            where = f"{path.relative_to(ROOT)}:{n}"
            if not _NOT_RUN.match(line):
                problems.append(f"{where}: write it as <!-- not run: REASON -->")
                continue
            following = next((k for k in range(n, len(lines)) if lines[k].strip()), None)
            if following is None or following + 1 not in starts:
                problems.append(f"{where}: not followed by a Python block")
    assert not problems, "\n".join(problems)


def test_some_blocks_run() -> None:
    """The collection finds the blocks (a broken parser would pass everything)."""
    blocks = [b for p in DOC_FILES for b in python_blocks(p)]
    assert len([b for b in blocks if b.not_run is None]) >= 20
    assert any(b.path.name == "README.md" and b.not_run is None for b in blocks)


def _public(module: Any) -> list[str]:
    return [f"{module.__name__}.{name}" for name in module.__all__]


def test_api_reference_covers_every_public_name() -> None:
    """Each public name of dumpling_async, .testing and .redis has a ``:::`` entry."""
    documented = {
        m["path"]
        for page in (DOCS / "api").glob("*.md")
        for m in _DIRECTIVE.finditer(page.read_text())
    }
    expected = (
        _public(dumpling_async) + _public(dumpling_async.testing) + _public(dumpling_async.redis)
    )
    assert sorted(set(expected) - documented) == []


def test_configuration_page_has_every_client_keyword() -> None:
    """The configuration reference has a row for every AsyncDumplingClient keyword."""
    page = (DOCS / "configuration.md").read_text()
    keywords = list(inspect.signature(AsyncDumplingClient.__init__).parameters)[1:]
    assert [k for k in keywords if f"| `{k}` |" not in page] == []


def _hierarchy(text: str) -> str:
    start = text.index("DumplingError\n")
    end = text.find("\n\n", start)
    return text[start : None if end < 0 else end].strip()


def test_errors_page_draws_the_current_hierarchy() -> None:
    """The tree on the errors page is the one in _errors.py's docstring, and the table
    has a row for every exception class."""
    from dumpling_async import _errors

    page = (DOCS / "errors.md").read_text()
    tree = next(b.code for b in parse_blocks(DOCS / "errors.md") if b.lang == "text")
    assert _hierarchy(tree) == _hierarchy(_errors.__doc__ or "")
    errors = [name for name in _errors.__all__ if isinstance(getattr(_errors, name), type)]
    assert [name for name in errors if f"`{name}`" not in page] == []


def test_relative_links_of_the_readme_exist() -> None:
    """The README's links into docs/ and the repository point at files that exist."""
    text = (ROOT / "README.md").read_text()
    targets = [m["target"].split("#")[0] for m in _LINK.finditer(text)]
    local = [t for t in targets if t and "://" not in t and not t.startswith("mailto:")]
    assert local, "the README links into docs/"
    assert [t for t in local if not (ROOT / t).exists()] == []


def _command_lines() -> Iterator[tuple[str, list[str]]]:
    """``dumpling-async ...`` lines of the console blocks, as (where, arguments)."""
    for path in DOC_FILES:
        for block in parse_blocks(path):
            if block.lang not in {"console", "shell", "bash", "sh"}:
                continue
            for n, line in enumerate(block.code.splitlines()):
                found = _COMMAND.search(line)  # at the start, or after a pipe
                if found:
                    rest = line[found.end() :].replace("[", " ").replace("]", " ")
                    yield (
                        f"{block.path.relative_to(ROOT)}:{block.line + n}",
                        shlex.split(rest, comments=True),
                    )


def test_command_lines_in_the_docs_use_real_commands_and_options() -> None:
    """Every ``dumpling-async`` line of a console block names a real command and real
    options of it (or of the group)."""
    from dumpling_async.cli._commands import cli

    def names(command: Any) -> set[str]:
        return {opt for param in command.params for opt in param.opts + param.secondary_opts}

    group = names(cli) | {"--help", "-h"}
    problems, checked = [], 0
    for where, words in _command_lines():
        commands = [w for w in words if not w.startswith("-") and w in cli.commands]
        if not commands:
            problems.append(f"{where}: no dumpling-async command in {words}")
            continue
        allowed = group | names(cli.commands[commands[0]]) | {"--help", "-h"}
        for word in words:
            option = word.split("=")[0]
            if option.startswith("-") and option != "-" and option not in allowed:
                problems.append(f"{where}: {commands[0]} has no option {option}")
        checked += 1
    assert not problems, "\n".join(problems)
    assert checked >= 10
