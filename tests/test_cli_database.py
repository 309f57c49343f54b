"""``profiles -o results.db``: a SQLite database of every handle's latest outcome, kept
across runs and lists, ``--max-age``, and ``export``; over a real fake server."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
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


def test_a_refresh_that_fails_keeps_the_older_profile(
    serve: Callable[..., FakeDumplingServer], tmp_path: Path
) -> None:
    """A stale profile whose refresh ends in an error (a budget reached, a 404) keeps
    its row: an error never replaces a profile, and a position not attempted writes none."""
    names = handles(6, "kept")
    source = write_lines(tmp_path / "in.txt", names)
    out = tmp_path / "results.db"
    assert _profiles(serve(), source, out, "-q") == 0
    with sqlite3.connect(out) as db:
        db.execute("UPDATE results SET fetched_at = fetched_at - 7200")
        before = db.execute("SELECT key, raw FROM results ORDER BY key").fetchall()
    gone = serve(unknown_handles={names[0]})  # one profile deleted meanwhile
    code = _profiles(gone, source, out, "-q", "--max-age", "1h", "--max-credits", "30")
    assert code in (1, 3)
    # 30 credits: three profiles bought; the 404 costs nothing; two never attempted.
    assert len(gone.charged) == 3 and names[0] not in gone.charged
    with sqlite3.connect(out) as db:
        after = db.execute("SELECT key, raw FROM results ORDER BY key").fetchall()
        (ok,) = db.execute("SELECT count(*) FROM results WHERE ok").fetchone()
    assert ok == 6 and [key for key, _ in after] == [key for key, _ in before]
    assert dict(after)[names[0]] == dict(before)[names[0]]  # the older profile, intact


async def test_results_are_committed_within_a_quarter_second(tmp_path: Path) -> None:
    """A result stored while nothing else is sent is committed by the batch's timer, so
    a kill soon after does not lose it."""
    from dumpling_async._core.converter import structure_profile
    from dumpling_async._results import ProfileResult
    from dumpling_async.cli._database import DatabaseOutput
    from dumpling_async.cli._input import InputEntry
    from dumpling_async.cli._output import Retry
    from dumpling_async.testing import fake_profile

    path = tmp_path / "results.db"
    out = DatabaseOutput(str(path), resume=True, retry=Retry(), max_age=None)
    try:
        out.sent("alone")
        profile = structure_profile(fake_profile("alone"))
        out.record(
            InputEntry(index=0, line=1, text="alone"),
            ProfileResult(index=0, input="alone", handle="alone", profile=profile),
        )

        def committed() -> tuple[int, int]:
            with sqlite3.connect(path) as other:  # another connection sees only commits
                (rows,) = other.execute("SELECT count(*) FROM results").fetchone()
                (sent,) = other.execute("SELECT count(*) FROM sent").fetchone()
            return rows, sent

        assert committed() == (0, 1)  # the result waits for its batch
        await asyncio.sleep(0.5)
        assert committed() == (1, 0)
    finally:
        out.close()


async def test_a_repeat_of_this_runs_answer_is_left_to_the_bulk_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A send's record is committed without the results waiting in memory; a key this run
    answered, written or waiting, is not answered from the database (``iter_profiles``
    reports the repeat) and forces no write, while an earlier run's row still answers; a
    write that fails keeps its results for the next one."""
    from dumpling_async._core.converter import structure_profile
    from dumpling_async._errors import ServerError
    from dumpling_async._results import ProfileResult
    from dumpling_async.cli import _database
    from dumpling_async.cli._database import DatabaseOutput
    from dumpling_async.cli._files import OutputError
    from dumpling_async.cli._input import InputEntry
    from dumpling_async.cli._output import Retry
    from dumpling_async.testing import fake_profile

    monkeypatch.setattr(_database, "_BATCH_SECONDS", 60.0)  # only a full batch writes
    monkeypatch.setattr(_database, "_BATCH", 3)
    path = tmp_path / "results.db"

    def entry(name: str) -> InputEntry:
        return InputEntry(index=0, line=1, text=name)

    def found(name: str) -> ProfileResult:
        profile = structure_profile(fake_profile(name))
        return ProfileResult(index=0, input=name, handle=name, profile=profile)

    def committed() -> tuple[int, int]:
        with sqlite3.connect(path) as other:  # another connection sees only commits
            (rows,) = other.execute("SELECT count(*) FROM results").fetchone()
            (sent,) = other.execute("SELECT count(*) FROM sent").fetchone()
        return rows, sent

    older = DatabaseOutput(str(path), resume=True, retry=Retry(), max_age=None)
    older.record(entry("kept"), found("kept"))
    older.record(entry("other"), found("other"))
    older.close()
    out = DatabaseOutput(str(path), resume=True, retry=Retry(), max_age=None)
    try:
        assert out.get("other") is True  # an earlier run's row
        for name in ("fresh", "kept"):
            out.sent(name)
        out.record(entry("fresh"), found("fresh"))
        failed = ServerError("upstream failed", status=500)
        out.record(entry("kept"), ProfileResult(index=1, input="kept", handle="kept", error=failed))
        out.sent("next")
        assert committed() == (2, 3)  # the records alone: both results still wait
        assert out.get("fresh") is None and out.get("kept") is None  # waiting: this run's
        out.prefetch(["fresh", "kept", "unseen"])
        assert out.get("fresh") is None and out.get("kept") is None
        assert out.get("unseen") is None
        assert committed() == (2, 3)  # no write forced
        out.record(entry("next"), found("next"))  # the third: the batch is written
        assert committed() == (4, 0)
        assert out.get("fresh") is None and out.get("next") is None  # rows this run added
        assert out.get("kept") is True  # the older profile, not the failed refresh
        out.sent("last")
        out.record(entry("last"), found("last"))
        out.record(entry("more"), found("more"))
        with sqlite3.connect(path) as other:  # another writer holds the file
            other.execute("BEGIN IMMEDIATE")
            out._db.execute("PRAGMA busy_timeout = 0")
            with pytest.raises(OutputError):
                out.record(entry("most"), found("most"))  # a full batch, not written
        assert committed() == (4, 1)
    finally:
        out.close()  # the batch kept is written
    assert committed() == (7, 0)


def test_answers_read_ahead_are_the_answers_asked_one_by_one(tmp_path: Path) -> None:
    """Over profiles, kept and retried errors, stale rows, handles a killed run left sent
    and handles never seen, ``prefetch`` then ``get`` answers as ``get`` alone does, for
    every retry and age setting, over more keys than one query reads."""
    from dumpling_async._core.converter import structure_profile
    from dumpling_async._errors import NotFoundError, UpstreamError
    from dumpling_async._results import ProfileResult
    from dumpling_async.cli._database import _AHEAD, DatabaseOutput
    from dumpling_async.cli._input import InputEntry
    from dumpling_async.cli._output import Retry
    from dumpling_async.testing import fake_profile

    path = tmp_path / "results.db"
    names = handles(2 * _AHEAD + 50, "mixed")
    out = DatabaseOutput(str(path), resume=True, retry=Retry(), max_age=None)
    try:
        for i, name in enumerate(names):
            entry = InputEntry(index=i, line=i + 1, text=name)
            if i % 7 == 0:
                out.sent(name)  # in flight when the run "dies": no result
                continue
            if i % 5 == 0:
                transient = UpstreamError("upstream failed", status=502)
                error = NotFoundError("no such user", status=404) if i % 2 else transient
                out.record(entry, ProfileResult(index=i, input=name, handle=name, error=error))
                continue
            profile = structure_profile(fake_profile(name))
            out.record(entry, ProfileResult(index=i, input=name, handle=name, profile=profile))
        out._flush()
    finally:
        out._db.close()  # as a kill leaves it: the sent rows stay
        os.close(out._lock_fd)
    with sqlite3.connect(path) as db:  # a third of the rows fetched two hours ago
        db.execute("UPDATE results SET fetched_at = fetched_at - 7200 WHERE rowid % 3 = 0")
    keys = [*names, *handles(40, "unseen"), names[3], names[3]]
    for retry in (Retry(), Retry(errors=True), Retry(unanswered=True)):
        for max_age in (None, 3600.0):
            one = DatabaseOutput(str(path), resume=True, retry=retry, max_age=max_age)
            try:
                alone = [one.get(key) for key in keys]
                one.prefetch(keys)
                ahead = [one.get(key) for key in keys]
            finally:
                one.close()
            assert ahead == alone, (retry, max_age)
            assert {True, False, None} <= set(alone)


def test_a_resume_reads_outcomes_from_an_index_added_to_older_databases(
    tmp_path: Path,
) -> None:
    """The outcomes a resume reads come from an index alone (not the rows of a kilobyte
    or two); a database made before that index gets it when opened to write."""
    from dumpling_async.cli._database import _OUTCOMES, ENDPOINT, DatabaseOutput
    from dumpling_async.cli._output import Retry

    path = tmp_path / "results.db"
    DatabaseOutput(str(path), resume=True, retry=Retry(), max_age=None).close()
    query = "EXPLAIN QUERY PLAN " + _OUTCOMES.format("?, ?")
    with sqlite3.connect(path) as db:
        plan = " ".join(str(row) for row in db.execute(query, (ENDPOINT, "a", "b")))
        assert "COVERING INDEX results_outcome" in plan, plan
        db.execute("DROP INDEX results_outcome")  # as a database made before it
    DatabaseOutput(str(path), resume=True, retry=Retry(), max_age=None).close()
    with sqlite3.connect(path) as db:
        names = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
    assert "results_outcome" in names
