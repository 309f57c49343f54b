"""End-to-end tests of the ``dumpling-async`` command line.

Each test runs the real CLI (``python -m dumpling_async``) in a subprocess against a
``FakeDumplingServer`` that serves from its own event loop in a background thread, so the
server's own records (what it was asked, what it charged) can be checked afterwards.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pexpect
import pytest

from dumpling_async import normalize_handle
from dumpling_async.testing import AnswerTime, FakeDumplingServer, RateLimitRule, fake_profile

KEY = "sk-test-4b1d9e0c7a52f3e8"
CLI = [sys.executable, "-m", "dumpling_async"]


def cli_env(key: str | None = KEY, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DUMPLINGAI_", "DUMPLING_")) and k not in ("COLUMNS", "LINES")
    }
    if key is not None:
        env["DUMPLINGAI_API_KEY"] = key
    env.update(extra)
    return env


def run_cli(
    *args: str,
    stdin: bytes | None = None,
    key: str | None = KEY,
    cwd: Path | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*CLI, *args],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=cli_env(key),
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def handles(n: int, prefix: str = "creator") -> list[str]:
    return [f"{prefix}_{i:04d}" for i in range(n)]


def test_jsonl_output_matches_server_records(
    serve: Callable[..., FakeDumplingServer], tmp_path: Path
) -> None:
    """JSONL output has one line per distinct handle, each matching what the server charged."""
    server = serve(rate_limit=RateLimitRule(50, 1.0))
    names = handles(110)
    lines = [
        "# a comment",
        *names[:50],
        "",
        "@CREATOR_0003",
        f"https://www.tiktok.com/@{names[7]}?lang=en",
        "unknown_one",
        "not a handle!",
        *names[50:],
        "unknown_two",
    ]
    source = write_lines(tmp_path / "in.txt", lines)
    out = tmp_path / "out.jsonl"
    result = run_cli("profiles", str(source), "-o", str(out), "--base-url", server.url)
    assert result.returncode == 1, result.stderr  # 404s and an invalid line
    records = read_jsonl(out)
    assert len(records) == 110 + 2 + 1
    keys = Counter(r["handle"] for r in records)
    assert max(keys.values()) == 1
    ok = {r["handle"]: r for r in records if r["ok"]}
    assert set(ok) == set(names) == set(server.charged)
    assert all(count == 1 for count in server.charged.values())
    for handle, record in ok.items():
        assert record["profile"] == fake_profile(handle)
        assert lines[record["line"] - 1] == record["input"]
    errors = {r["handle"]: r["error"] for r in records if not r["ok"]}
    assert errors["unknown_one"]["type"] == "ProfileNotFoundError"
    assert errors["unknown_one"]["status"] == 404
    assert errors["not a handle!"]["type"] == "InvalidHandleError"
    assert sorted(r["index"] for r in records) == sorted(
        i
        for i, h in enumerate(line for line in lines if line and not line.startswith("#"))
        if i not in (50, 51)  # the two repeats
    )
    assert "done ·" in result.stderr and "credits" in result.stderr  # plain progress lines
    assert "duplicates" in result.stderr and "429s seen" in result.stderr


def test_repeats_far_apart_get_no_second_row_or_charge(
    serve: Callable[..., FakeDumplingServer], tmp_path: Path
) -> None:
    """Repeats long after their first (past the outcomes the bulk engine keeps), beside
    each other, and of a line that is not a handle, each give no second row or charge."""
    server = serve()
    names = handles(700, "far")
    repeats = [names[0].upper(), f"@{names[1]}", names[699], "not a handle!"]
    lines = ["not a handle!", *names, *repeats, names[2]]
    source = write_lines(tmp_path / "in.txt", lines)
    for out in (tmp_path / "out.jsonl", tmp_path / "out.csv", tmp_path / "out.db"):
        server.charged.clear()
        result = run_cli("profiles", str(source), "-o", str(out), "--base-url", server.url)
        assert result.returncode == 1, result.stderr  # the line that is not a handle
        assert server.charged == dict.fromkeys(names, 1)
        assert re.search(r"duplicates\s+5\b", result.stderr), result.stderr
        if out.suffix == ".jsonl":
            rows = Counter(
                r["input"] if r["handle"] is None else r["handle"] for r in read_jsonl(out)
            )
            assert len(rows) == 701 and max(rows.values()) == 1


def test_an_output_through_a_dangling_symlink_is_created_at_its_target(
    serve: Callable[..., FakeDumplingServer], tmp_path: Path
) -> None:
    """``-o link`` whose target does not exist yet writes the target, as opening a path
    for writing does (the shared opening once refused it)."""
    server = serve()
    source = write_lines(tmp_path / "in.txt", ["alpha_1", "beta_2"])
    (tmp_path / "link.jsonl").symlink_to(tmp_path / "real.jsonl")
    result = run_cli(
        "profiles", str(source), "-o", str(tmp_path / "link.jsonl"), "--base-url", server.url
    )
    assert result.returncode == 0, result.stderr
    assert sorted(r["handle"] for r in read_jsonl(tmp_path / "real.jsonl")) == ["alpha_1", "beta_2"]


def test_csv_input_and_output(serve: Callable[..., FakeDumplingServer], tmp_path: Path) -> None:
    """A CSV input column is read and CSV output rows match the server's profiles."""
    server = serve()
    names = handles(25, "maker")
    source = tmp_path / "in.csv"
    with source.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "Username", "note"])
        for i, name in enumerate(names):
            writer.writerow([i, f"@{name}", "multi\nline, quoted" if i == 3 else ""])
        writer.writerow([99, "unknown_maker", ""])
    out = tmp_path / "out.csv"
    result = run_cli(
        "profiles", str(source), "--column", "username", "-o", str(out), "--base-url", server.url
    )
    assert result.returncode == 1, result.stderr
    with out.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 26
    by_handle = {row["handle"]: row for row in rows}
    assert set(server.charged) == set(names) == {h for h, r in by_handle.items() if not r["error"]}
    for name in names:
        row, profile = by_handle[name], fake_profile(name)
        assert row["unique_id"] == name
        assert row["nickname"] == profile["user"]["nickname"]
        assert row["region"] == profile["user"]["region"]
        assert row["verified"] == str(profile["user"]["verified"]).lower()
        assert int(row["follower_count"]) == profile["stats"]["followerCount"]
        assert int(row["video_count"]) == profile["stats"]["videoCount"]
    assert by_handle["unknown_maker"]["error"].startswith("ProfileNotFoundError")


def test_stdin_input_to_stdout(serve: Callable[..., FakeDumplingServer]) -> None:
    """Handles piped on stdin ('-') are looked up and written to stdout."""
    server = serve()
    result = run_cli("profiles", "-", "--base-url", server.url, stdin=b"alice\n@Bob\n\nalice\n")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(r["handle"] for r in records) == ["alice", "bob"]
    assert all(r["ok"] for r in records)
    assert server.charged == Counter({"alice": 1, "bob": 1})

    broken = run_cli("profiles", "-", "--base-url", server.url, stdin=b"carol\ndave\n\x00junk\n")
    assert broken.returncode == 2 and "NUL bytes" in broken.stderr
    # The lookups before the bad line were still written (they may have been charged).
    assert sorted(json.loads(line)["handle"] for line in broken.stdout.splitlines()) == [
        "carol",
        "dave",
    ]


def test_stdin_redirected_from_a_file(
    serve: Callable[..., FakeDumplingServer], tmp_path: Path
) -> None:
    """Stdin redirected from a regular file is counted first, then read again from the start."""
    server = serve()
    source = write_lines(tmp_path / "in.txt", handles(5, "redirect"))
    with source.open("rb") as stdin:
        result = subprocess.run(
            [*CLI, "profiles", "-", "--base-url", server.url],
            stdin=stdin,
            capture_output=True,
            env=cli_env(),
            timeout=60,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 5
    assert sum(server.charged.values()) == 5


def test_resume_after_sigkill_never_duplicates(
    serve: Callable[..., FakeDumplingServer], tmp_path: Path
) -> None:
    """A run killed with SIGKILL, plus a torn line, resumes to exactly one line per handle,
    and pays for none twice."""
    server = serve(rate_limit=RateLimitRule(100, 1.0))
    names = handles(400, "resume")
    source = write_lines(tmp_path / "in.txt", names)
    out = tmp_path / "out.jsonl"
    args = ["profiles", str(source), "-o", str(out), "--base-url", server.url, "-q"]
    first = subprocess.Popen(
        [*CLI, *args], env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if out.exists() and out.read_bytes().count(b"\n") >= 120:
                break
            time.sleep(0.02)
        # A second run on the same output is refused while the first holds its lock.
        locked = run_cli(*args)
        assert locked.returncode == 2
        assert "another dumpling-async run" in locked.stderr
        first.kill()
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(10)
        assert first.stderr is not None
        first.stderr.close()
    assert first.returncode == -signal.SIGKILL
    time.sleep(0.3)  # let the server finish answering what was in flight
    data = out.read_bytes()
    written: set[str] = set()
    for raw in data.split(b"\n"):
        with contextlib.suppress(ValueError):  # the torn tail, if the kill left one
            written.add(json.loads(raw)["handle"])
    assert 0 < len(written) < 400
    charged_before = set(server.charged)
    lost = charged_before - written  # charged while in flight, answer lost to the kill
    assert len(lost) <= 16  # at most the concurrency
    if data.endswith(b"\n"):
        with out.open("ab") as handle:  # simulate a torn write
            handle.write(b'{"handle":"resume_0399","input":"resume_0399","ok":tr')

    second = run_cli(*args)
    records = read_jsonl(out)  # every line parses: the torn one is gone
    assert Counter(r["handle"] for r in records) == Counter(names)
    # What was in flight at the kill (its journal says) is kept as unanswered, not bought
    # again: nothing is paid twice.
    unanswered = {r["handle"] for r in records if not r["ok"]}
    assert all(r["error"]["type"] == "Unanswered" for r in records if not r["ok"])
    assert lost <= unanswered and second.returncode == (1 if unanswered else 0), second.stderr
    assert all(server.charged[name] <= 1 for name in names)
    assert all(server.charged[name] == 1 for name in written)


def _outcomes(out: Path, fmt: str) -> list[tuple[str, str | None]]:
    """(handle, error type or None) for each line of *out* (of a database: exported)."""
    if fmt == "sqlite":
        exported = out.with_suffix(".exported.jsonl")
        assert run_cli("export", str(out), "-o", str(exported)).returncode == 0
        out, fmt = exported, "jsonl"
    if fmt == "jsonl":
        return [(r["handle"], r.get("error", {}).get("type")) for r in read_jsonl(out)]
    with out.open(newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    return [(r["handle"], r["error"].split(":", 1)[0] if r["error"] else None) for r in rows]


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "sqlite"])
def test_a_run_killed_again_and_again_pays_each_handle_once(
    serve: Callable[..., FakeDumplingServer], tmp_path: Path, fmt: str
) -> None:
    """Killed three times with requests in flight, against a server that finishes and
    charges them, and rerun: no handle is bought twice; those in flight at a kill are kept
    as unanswered (maybe charged), and --retry-unanswered buys exactly those again."""
    server = serve(
        rate_limit=RateLimitRule(100, 1.0), latency=AnswerTime(mean=0.3), charge_abandoned=True
    )
    names = handles(500, "killed")
    source = write_lines(tmp_path / "in.txt", names)
    out = tmp_path / f"out.{'db' if fmt == 'sqlite' else fmt}"
    args = ["profiles", str(source), "-o", str(out), "--base-url", server.url, "-q"]
    for _ in range(3):
        seen = len(server.records)
        run = subprocess.Popen(
            [*CLI, *args], env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + 30
            while not (len(server.records) >= seen + 60 and server.in_flight >= 5):
                assert time.monotonic() < deadline, "the run never had answers on their way"
                time.sleep(0.01)
        finally:
            run.kill()
            run.wait(10)
        assert run.returncode == -signal.SIGKILL
        deadline = time.monotonic() + 10
        while server.in_flight and time.monotonic() < deadline:
            time.sleep(0.02)  # the server finishes (and charges) what the kill abandoned
    assert server.abandoned > 0
    assert max(server.charged.values()) == 1

    finished = run_cli(*args)
    assert finished.returncode == 1, finished.stderr  # some are unanswered
    outcomes = _outcomes(out, fmt)
    assert sorted(handle for handle, _ in outcomes) == names  # each handle once
    unanswered = {handle for handle, kind in outcomes if kind == "Unanswered"}
    assert unanswered and all(kind is None for handle, kind in outcomes if handle not in unanswered)
    assert max(server.charged.values()) == 1  # never bought twice
    assert set(server.charged) >= set(names) - unanswered
    if fmt != "csv":
        records = read_jsonl(out.with_suffix(".exported.jsonl") if fmt == "sqlite" else out)
        assert all(r["error"]["maybe_charged"] for r in records if not r["ok"])

    before = Counter(server.charged)
    retried = run_cli(*args, "--retry-unanswered")
    assert retried.returncode == 0, retried.stderr
    assert set(Counter(server.charged) - before) == unanswered  # exactly those, once each
    assert sorted(_outcomes(out, fmt)) == [(name, None) for name in names]
    assert not list(tmp_path.glob("*.sent"))  # a finished run leaves no journal


def test_a_journal_left_beside_a_deleted_output_is_not_read(
    serve: Callable[..., FakeDumplingServer], tmp_path: Path
) -> None:
    """An output deleted (not --overwrite) with its journal still beside it: the journal
    belongs to nothing, so nothing is marked unanswered and every handle is looked up."""
    server = serve()
    source = write_lines(tmp_path / "in.txt", handles(5, "fresh"))
    out = tmp_path / "out.jsonl"
    stale = tmp_path / "out.jsonl.sent"
    stale.write_text('"fresh_0001"\n"someone_else"\n')
    result = run_cli("profiles", str(source), "-o", str(out), "--base-url", server.url, "-q")
    assert result.returncode == 0, result.stderr
    assert all(r["ok"] for r in read_jsonl(out)) and len(read_jsonl(out)) == 5
    assert not stale.exists()


def test_sigint_finishes_in_flight_then_resumes(
    serve: Callable[..., FakeDumplingServer], tmp_path: Path
) -> None:
    """SIGINT stops after the lookups in flight are written (exit 130): none is paid twice."""
    server = serve(rate_limit=RateLimitRule(50, 1.0))
    names = handles(150, "sigint")
    source = write_lines(tmp_path / "in.txt", names)
    out = tmp_path / "out.jsonl"
    args = ["profiles", str(source), "-o", str(out), "--base-url", server.url]
    proc = subprocess.Popen(
        [*CLI, *args], env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if out.exists() and out.read_bytes().count(b"\n") >= 30:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "interrupted (SIGINT)" in err and "not attempted" in err
    interrupted = read_jsonl(out)
    assert set(server.charged) == {r["handle"] for r in interrupted}  # nothing lost in flight
    assert len(interrupted) < len(names)

    resumed = run_cli(*args, "-q")
    assert resumed.returncode == 0, resumed.stderr
    assert Counter(r["handle"] for r in read_jsonl(out)) == Counter(names)
    assert server.charged == Counter(names)


def test_retry_errors_rewrites_without_duplicates(
    serve: Callable[..., FakeDumplingServer], tmp_path: Path
) -> None:
    """Errored handles are skipped on resume, and --retry-errors replaces their lines."""
    server = serve()
    server.inject("500", "500", "500", handle="flaky_one")
    names = ["good_one", "flaky_one", "unknown_one", "bad handle!", "good_two"]
    source = write_lines(tmp_path / "in.txt", names)
    out = tmp_path / "out.jsonl"
    base = ["profiles", str(source), "-o", str(out), "--base-url", server.url]
    assert run_cli(*base).returncode == 1
    first = {r["handle"]: r for r in read_jsonl(out)}
    assert first["flaky_one"]["error"]["type"] == "ServerError"
    assert first["unknown_one"]["error"]["type"] == "ProfileNotFoundError"
    requests = server.requests

    with out.open("ab") as handle:
        handle.write(b'{"handle":"good_t')  # a torn write
    again = run_cli(*base)
    assert again.returncode == 1  # earlier errors are still in the output
    assert server.requests == requests  # nothing was sent again
    assert [r["handle"] for r in read_jsonl(out)] == list(first)

    retried = run_cli(*base, "--retry-errors")
    assert retried.returncode == 1, retried.stderr  # unknown_one is still a 404
    records = read_jsonl(out)
    assert Counter(r["handle"] for r in records) == Counter(list(first))
    final = {r["handle"]: r for r in records}
    assert final["flaky_one"]["ok"] is True
    assert final["unknown_one"]["error"]["status"] == 404
    assert len(server.requests_for("unknown_one")) == 2
    assert server.charged == Counter({"good_one": 1, "good_two": 1, "flaky_one": 1})
    assert not list(tmp_path.glob(".out.jsonl.*"))  # no temporary file left behind


def test_exit_3_when_credits_run_out_then_resume(
    serve: Callable[..., FakeDumplingServer], tmp_path: Path
) -> None:
    """Running out of credits aborts with exit 3; a plain rerun looks up the rest once."""
    poor = serve(credits=30)
    names = handles(20, "credit")
    source = write_lines(tmp_path / "in.txt", names)
    out = tmp_path / "out.jsonl"
    result = run_cli("profiles", str(source), "-o", str(out), "--base-url", poor.url)
    assert result.returncode == 3, result.stderr
    assert "aborted" in result.stderr and "Insufficient credits" in result.stderr
    assert sum(poor.charged.values()) == 3
    first = read_jsonl(out)
    assert sum(r["ok"] for r in first) == 3

    rich = serve()
    again = run_cli("profiles", str(source), "-o", str(out), "--base-url", rich.url)
    assert again.returncode == 0, again.stderr
    records = read_jsonl(out)
    assert Counter(r["handle"] for r in records) == Counter(names)
    assert all(r["ok"] for r in records)
    assert set(rich.charged) == set(names) - set(poor.charged)


def test_exit_3_on_rejected_key(serve: Callable[..., FakeDumplingServer], tmp_path: Path) -> None:
    """A key the server rejects (401) aborts the batch with exit 3 and no charges."""
    server = serve(api_keys={"other"})
    source = write_lines(tmp_path / "in.txt", handles(40))
    result = run_cli("profiles", str(source), "--base-url", server.url, "-q")
    assert result.returncode == 3
    assert "aborted: 401" in result.stderr
    assert server.requests <= 16 and not server.charged
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert {r["error"]["type"] for r in records} <= {"AuthenticationError", "BatchAbortedError"}


def test_exit_0_and_max_credits_stop(
    serve: Callable[..., FakeDumplingServer], tmp_path: Path
) -> None:
    """--max-credits stops early with exit 1; the rerun finishes with exit 0, nothing twice."""
    server = serve()
    names = handles(12, "budget")
    source = write_lines(tmp_path / "in.txt", names)
    out = tmp_path / "out.jsonl"
    base = ["profiles", str(source), "-o", str(out), "--base-url", server.url]
    stopped = run_cli(*base, "--max-credits", "50", "--concurrency", "1")
    assert stopped.returncode == 1, stopped.stderr
    assert "credit budget" in stopped.stderr and "not attempted" in stopped.stderr
    assert sum(server.charged.values()) == 5
    finished = run_cli(*base)
    assert finished.returncode == 0, finished.stderr
    assert Counter(r["handle"] for r in read_jsonl(out)) == Counter(names)
    assert server.charged == Counter(names)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"alice\n\x7fELF\x02\x01\x01\x00\x00\x00junk\n", "NUL bytes"),
        (b"a" * (10 * 1024 * 1024), "longer than 64 KiB"),
        (b"alice\nb\xc3\x28ob\n", "not valid UTF-8"),
        (b"\xff\xfea\x00l\x00i\x00c\x00e\x00", "UTF-16"),
    ],
    ids=["binary", "10MB-line", "bad-utf8", "utf16"],
)
def test_malformed_input_exits_2(
    serve: Callable[..., FakeDumplingServer], tmp_path: Path, content: bytes, message: str
) -> None:
    """Malformed input files exit 2 with a clear message, no traceback and no requests."""
    server = serve()
    source = tmp_path / "in.txt"
    source.write_bytes(content)
    result = run_cli("profiles", str(source), "--base-url", server.url)
    assert result.returncode == 2
    assert message in result.stderr
    assert server.requests == 0


def test_a_handle_list_read_in_chunks_is_read_as_line_by_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A file's entries counted before a run and read again in chunks are the entries
    (positions, lines, texts) the line-by-line read gives, for lists of comments, blanks,
    CRLF, a BOM and multi-byte characters cut at every chunk boundary; a malformed one
    raises as the line-by-line read does."""
    import io
    import random

    from dumpling_async.cli import _input

    rng = random.Random(7)
    pieces = ["user1", "  alice ", "# note", "", "   ", " b#c", "ünï", "日本", "\r", "@bob"]
    chunked = 0
    for _ in range(400):
        text = "\n".join(rng.choice(pieces) for _ in range(rng.randint(0, 40)))
        bom = _input._BOM if rng.random() < 0.2 else b""
        data = bom + (text + rng.choice(["", "\n"])).encode()
        monkeypatch.setattr(_input, "_CHUNK", rng.choice([3, 4, 5, 7, 64, 1 << 20]))
        expected = list(_input.iter_entries(io.BytesIO(data), "in.txt", None))
        count, read_in_chunks = _input.count_stream(io.BytesIO(data), "in.txt", None)
        assert count == len(expected), data
        if read_in_chunks:
            chunked += 1
            again = _input.iter_entries(io.BytesIO(data), "in.txt", None, checked=True)
            assert list(again) == expected, data
    assert chunked > 300  # the chunked read, not its fallback, is what was compared
    # Lines that may be too long are read line by line: at the limit they pass, past it
    # they fail, with the message (and line) the line-by-line read gives.
    for line in (b"\xc3\xa9" * 20_000, b"x" * 65_535, b"x" * 65_537, b"\xe6\x97\xa5" * 22_000):
        data = b"alice\n" + line + b"\nbob\n"
        try:
            expected: object = len(list(_input.iter_entries(io.BytesIO(data), "in.txt", None)))
        except _input.InputError as exc:
            expected = str(exc)
        try:
            got: object = _input.count_stream(io.BytesIO(data), "in.txt", None)[0]
        except _input.InputError as exc:
            got = str(exc)
        assert got == expected, len(line)
    for bad in (b"ok\n\xc3(\n", b"a\nb\x00\n", b"x" * 70_000, b"\xff\xfea\x00"):
        with pytest.raises(_input.InputError) as line_by_line:
            list(_input.iter_entries(io.BytesIO(bad), "in.txt", None))
        with pytest.raises(_input.InputError, match=re.escape(str(line_by_line.value))):
            _input.count_stream(io.BytesIO(bad), "in.txt", None)
    # A file that changed after it was counted in chunks is refused, not misread.
    changed = _input.iter_entries(io.BytesIO(b"alice\nb\x00b\n"), "in.txt", None, checked=True)
    with pytest.raises(_input.InputError, match="changed while it was read"):
        list(changed)


async def test_entries_read_ahead_before_an_input_error_are_handed_on_first() -> None:
    """Batches of a read ahead: the entries read before an input error reach the run,
    then the error does."""
    from dumpling_async.cli._bulk_run import _batches
    from dumpling_async.cli._input import InputError

    async def source() -> AsyncIterator[object]:
        for n in range(7):
            yield n
        raise InputError("in.txt:8: not valid UTF-8")

    seen: list[list[object]] = []

    async def read() -> None:
        async for batch in _batches(source(), 3):
            seen.append(batch)

    with pytest.raises(InputError, match=re.escape("in.txt:8")):
        await read()
    assert seen == [[0, 1, 2], [3, 4, 5], [6]]


def test_usage_and_configuration_errors_exit_2(
    serve: Callable[..., FakeDumplingServer], tmp_path: Path
) -> None:
    """A CSV without the column, a missing key or file, or a foreign output file exit 2."""
    server = serve()
    table = tmp_path / "in.csv"
    table.write_text("name,followers\nalice,3\n", encoding="utf-8")
    no_column = run_cli("profiles", str(table), "--base-url", server.url)
    assert no_column.returncode == 2 and "no 'handle' column" in no_column.stderr

    source = write_lines(tmp_path / "in.txt", ["alice"])
    no_key = run_cli("profiles", str(source), "--base-url", server.url, key=None)
    assert no_key.returncode == 2 and "DUMPLINGAI_API_KEY" in no_key.stderr

    missing = run_cli("profiles", str(tmp_path / "nope.txt"), "--base-url", server.url)
    assert missing.returncode == 2

    for notes in ("these are my notes\n", "no newline, so it looks torn"):
        foreign = tmp_path / "notes.jsonl"
        foreign.write_text(notes, encoding="utf-8")
        refused = run_cli("profiles", str(source), "-o", str(foreign), "--base-url", server.url)
        assert refused.returncode == 2 and "--overwrite" in refused.stderr
        assert foreign.read_text(encoding="utf-8") == notes  # never truncated
    assert server.requests == 0


def test_progress_bar_on_a_terminal(
    serve: Callable[..., FakeDumplingServer], tmp_path: Path
) -> None:
    """Under a pseudo-terminal the rich progress bar shows credits, remaining and throttling."""
    server = serve(rate_limit=RateLimitRule(50, 1.0))
    source = write_lines(tmp_path / "in.txt", handles(120, "tty"))
    out = tmp_path / "out.jsonl"
    child = pexpect.spawn(
        sys.executable,
        ["-m", "dumpling_async", "profiles", str(source), "-o", str(out), "--base-url", server.url],
        env=cli_env(TERM="xterm-256color"),
        dimensions=(40, 200),
        encoding="utf-8",
        timeout=30,
    )
    child.expect(pexpect.EOF)
    child.close()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", child.before or "")
    assert child.exitstatus == 0, text
    bar = [line for line in re.split(r"[\r\n]", text) if "remaining" in line and "ETA" in line]
    assert bar, text
    assert re.search(r"120/120 .*/s credits 1200 remaining \d+/50 throttled \d+\.\ds", bar[-1])
    assert "Traceback" not in text and KEY not in text
    assert len(read_jsonl(out)) == 120


def test_demo_runs_without_a_key(tmp_path: Path) -> None:
    """`demo` needs no key or network, writes the sample's results and meets no 429."""
    out = tmp_path / "demo.jsonl"
    result = run_cli("demo", "--limit", "60", "-o", str(out), key=None, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    records = read_jsonl(out)
    outcomes = Counter(r["error"]["type"] if not r["ok"] else "ok" for r in records)
    assert set(outcomes) == {"ok", "ProfileNotFoundError", "InvalidHandleError"}
    assert len({r["handle"] for r in records}) == len(records)
    assert "throttled" in result.stderr and "most followed" in result.stderr
    # The demo tells its limiter the fake server's window: no 429 is spent learning it.
    assert "429 answers seen: 0 (the server counted 0)" in result.stderr


def test_profile_command(serve: Callable[..., FakeDumplingServer]) -> None:
    """`profile` prints one profile as JSON or a table; 404 exits 1, a bad handle 2."""
    server = serve()
    as_json = run_cli(
        "profile", "https://www.tiktok.com/@Some.One", "--json", "--base-url", server.url
    )
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == fake_profile("some.one")
    table = run_cli("profile", "some_one", "--base-url", server.url)
    assert table.returncode == 0 and "Some One" in table.stdout and "followers" in table.stdout
    missing = run_cli("profile", "unknown_person", "--base-url", server.url)
    assert missing.returncode == 1 and "not found" in missing.stderr
    bad = run_cli("profile", "no spaces allowed", "--base-url", server.url)
    assert bad.returncode == 2


def test_fake_server_command_serves_until_sigint() -> None:
    """`fake-server --port 0` prints its URL, answers lookups and stops cleanly on SIGINT."""
    proc = subprocess.Popen(
        [*CLI, "fake-server", "--port", "0", "--rate-limit", "100/1:sliding"],
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url), url
        found = run_cli("profile", "alice", "--json", "--base-url", url)
        assert found.returncode == 0 and json.loads(found.stdout)["user"]["uniqueId"] == "alice"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    assert "1 profiles charged" in err


def test_logging_json_and_key_never_shown(
    serve: Callable[..., FakeDumplingServer], tmp_path: Path
) -> None:
    """-v --log-format json logs each request as JSON on stderr and never shows the key."""
    server = serve()
    secret = "sk-live-DO-NOT-PRINT-31337"
    source = write_lines(tmp_path / "in.txt", ["alice", "unknown_bob"])
    result = run_cli(
        "profiles",
        str(source),
        "-v",
        "--log-format",
        "json",
        "--api-key",
        secret,
        "--base-url",
        server.url,
        key=None,
    )
    assert result.returncode == 1, result.stderr
    assert "process list" in result.stderr  # the --api-key warning
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    attempts = [e for e in events if e.get("event") == "attempt"]
    assert {e["target"] for e in attempts} == {"alice", "unknown_bob"}
    assert all(e["level"] == "debug" and e["logger"] == "dumpling_async" for e in attempts)
    assert secret not in result.stderr and secret not in result.stdout

    key_file = tmp_path / "key.txt"
    key_file.write_text(secret + "\n", encoding="utf-8")
    quiet = run_cli(
        "--api-key-file",
        str(key_file),
        "profiles",
        str(source),
        "-q",
        "--base-url",
        server.url,
        key=None,
    )
    assert quiet.returncode == 1 and quiet.stderr == ""


def test_simulate_and_console_script(tmp_path: Path) -> None:
    """--simulate needs no key, and the installed console script runs the same CLI."""
    source = write_lines(tmp_path / "in.txt", ["alice", "bob", "unknown_carol"])
    simulated = run_cli("profiles", str(source), "--simulate", "-q", key=None)
    assert simulated.returncode == 1
    assert sum(json.loads(line)["ok"] for line in simulated.stdout.splitlines()) == 2
    script = Path(sys.executable).with_name("dumpling-async")
    if not script.exists():
        pytest.skip("console script not installed next to the interpreter")
    version = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, check=False, timeout=30
    )
    assert version.returncode == 0 and "dumpling-async" in version.stdout


def test_normalised_handles_are_the_resume_key(
    serve: Callable[..., FakeDumplingServer], tmp_path: Path
) -> None:
    """A handle answered once is skipped later whatever its spelling (@NAME, URL)."""
    server = serve()
    out = tmp_path / "out.jsonl"
    first = write_lines(tmp_path / "a.txt", ["Alice.Cooks"])
    assert run_cli("profiles", str(first), "-o", str(out), "--base-url", server.url).returncode == 0
    # A complete record whose newline was lost is kept (and repaired), not looked up again.
    out.write_bytes(out.read_bytes().rstrip(b"\n"))
    second = write_lines(
        tmp_path / "b.txt", ["@ALICE.COOKS", "https://m.tiktok.com/@alice.cooks/video/1", "bob"]
    )
    result = run_cli("profiles", str(second), "-o", str(out), "--base-url", server.url)
    assert result.returncode == 0, result.stderr
    assert [normalize_handle(r["handle"]) for r in read_jsonl(out)] == ["alice.cooks", "bob"]
    assert server.charged == Counter({"alice.cooks": 1, "bob": 1})


def test_csv_formulas_are_quoted_and_resume_still_matches(
    serve: Callable[..., FakeDumplingServer], tmp_path: Path
) -> None:
    """An input that reads as a formula is written quoted, and a rerun still knows it."""
    server = serve()
    source = tmp_path / "in.txt"
    source.write_text('alice\n=HYPERLINK("http://x")\n+bob\n', encoding="utf-8")
    out = tmp_path / "out.csv"
    first = run_cli("profiles", str(source), "-o", str(out), "--base-url", server.url)
    assert first.returncode == 1, first.stderr  # two inputs are not handles
    with out.open(newline="", encoding="utf-8") as handle:
        cells = [row["handle"] for row in csv.DictReader(handle)]
    assert sorted(cells) == sorted(["alice", '\'=HYPERLINK("http://x")', "'+bob"])
    written = out.read_bytes()
    again = run_cli("profiles", str(source), "-o", str(out), "--base-url", server.url)
    assert again.returncode == 1, again.stderr
    assert out.read_bytes() == written  # nothing written twice
    assert server.charged == {"alice": 1}
