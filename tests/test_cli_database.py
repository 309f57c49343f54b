"""``profiles -o results.db``: a SQLite database of every handle's latest outcome, kept
across runs and lists, ``--max-age``, and ``export``; over a real fake server."""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from test_cli import handles, read_jsonl, run_cli, write_lines

from dumpling_async.testing import FakeDumplingServer


def _profiles(server: FakeDumplingServer, source: Path, out: Path, *extra: str) -> int:
    result = run_cli("profiles", str(source), "-o", str(out), "--base-url", server.url, *extra)
    assert "Traceback" not in result.stderr
    return result.returncode


def test_a_handle_in_the_database_is_not_bought_again_across_lists(
    serve: Callable[..., FakeDumplingServer], tmp_path: Path
) -> None:
    """Two overlapping lists into one database: each handle is paid once."""
    server = serve()
    shared = handles(20, "shared")
    first = write_lines(tmp_path / "a.txt", handles(30, "only_a") + shared)
    second = write_lines(tmp_path / "b.txt", [*shared, *handles(25, "only_b"), "only_a_0003"])
    out = tmp_path / "results.db"
    assert _profiles(server, first, out, "-q") == 0
    assert _profiles(server, second, out, "-q") == 0
    assert len(server.charged) == 75 and set(server.charged.values()) == {1}
    with sqlite3.connect(out) as db:
        (count,) = db.execute("SELECT count(*) FROM results WHERE ok").fetchone()
    assert count == 75


def test_max_age_buys_again_only_what_is_older(
    serve: Callable[..., FakeDumplingServer], tmp_path: Path
) -> None:
    """--max-age re-buys exactly the handles fetched longer ago; nothing when none is."""
    server = serve()
    names = handles(40, "aged")
    source = write_lines(tmp_path / "in.txt", names)
    out = tmp_path / "results.db"
    assert _profiles(server, source, out, "-q") == 0
    assert _profiles(server, source, out, "-q", "--max-age", "1h") == 0
    assert sum(server.charged.values()) == 40  # nothing stale: no request
    stale = set(names[::4])
    with sqlite3.connect(out) as db:  # as if fetched two hours ago
        db.executemany(
            "UPDATE results SET fetched_at = ? WHERE key = ?",
            [(time.time() - 7200, name) for name in stale],
        )
    before = Counter(server.charged)
    assert _profiles(server, source, out, "-q", "--max-age", "90m") == 0
    assert set(Counter(server.charged) - before) == stale
    assert _profiles(server, source, out, "-q", "--max-age", "90m") == 0  # now all fresh
    assert sum(server.charged.values()) == 40 + len(stale)


def test_export_writes_what_profiles_writes(
    serve: Callable[..., FakeDumplingServer], tmp_path: Path
) -> None:
    """A database exported as JSONL or CSV has the lines a file output of the same run
    has (but the index, which a database does not keep)."""
    server = serve(unknown_handles={"ghost_user"})
    names = [*handles(12, "exported"), "ghost_user", "not a handle!", "@Exported_0003"]
    source = write_lines(tmp_path / "in.txt", names)
    database = tmp_path / "results.db"
    assert _profiles(server, source, database, "-q") == 1  # a 404 and an invalid line
    for fmt in ("jsonl", "csv"):
        direct = tmp_path / f"direct.{fmt}"
        exported = tmp_path / f"exported.{fmt}"
        assert _profiles(server, source, direct, "-q") == 1
        assert run_cli("export", str(database), "-o", str(exported)).returncode == 0
        if fmt == "csv":
            direct_lines = direct.read_text().splitlines()
            exported_lines = exported.read_text().splitlines()
            assert direct_lines[0] == exported_lines[0]  # the header
            assert sorted(direct_lines[1:]) == sorted(exported_lines[1:])
        else:

            def lines(path: Path) -> list[dict[str, object]]:
                return sorted(
                    ({**r, "index": None} for r in read_jsonl(path)), key=lambda r: str(r)
                )

            assert lines(direct) == lines(exported)
    assert len(read_jsonl(tmp_path / "exported.jsonl")) == len(names) - 1  # one repeat


def test_a_database_of_another_shape_is_refused_before_any_request(
    serve: Callable[..., FakeDumplingServer], tmp_path: Path
) -> None:
    """Not SQLite, another program's SQLite, --max-age on a file, export of a file: each
    a clear error, exit 2, and no request."""
    server = serve()
    source = write_lines(tmp_path / "in.txt", handles(3, "refused"))
    text = tmp_path / "notes.db"
    text.write_text("these are my notes\n" * 100)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE customers (name TEXT)")
    for out, needle in ((text, "not a dumpling-async database"), (other, "not a dumpling-async")):
        result = run_cli("profiles", str(source), "-o", str(out), "--base-url", server.url)
        assert result.returncode == 2 and needle in result.stderr, result.stderr
    assert text.read_text() == "these are my notes\n" * 100  # left as it was
    result = run_cli(
        "profiles", str(source), "-o", str(tmp_path / "o.jsonl"), "--max-age", "7d",
        "--base-url", server.url,
    )  # fmt: skip
    assert result.returncode == 2 and "--max-age needs a database" in result.stderr
    result = run_cli("profiles", str(source), "--max-age", "soon", "--base-url", server.url)
    assert result.returncode == 2 and "expected a number and a unit" in result.stderr
    result = run_cli("export", str(text))
    assert result.returncode == 2 and "not a dumpling-async database" in result.stderr
    assert server.records == []
