"""The listing commands writing to a database (``videos HANDLE -o results.db``): a page
and its cursor committed together, many listings and the profiles in one file, and
``export --listing``; over a real fake server, the real CLI in a subprocess."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from test_cli import CLI, cli_env, handles, read_jsonl, run_cli, write_lines
from test_cli_listings import LISTINGS, Serve, _first, _handles, cursors, jsonl_ids

from dumpling_async.testing import fake_profile_videos


def _items(database: Path, command: str, subject: str) -> list[str]:
    """The ids a listing holds, in the order stored (read while a run may write)."""
    if not database.exists():
        return []
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as db:
        try:
            found = db.execute(
                "SELECT item_id FROM items WHERE command = ? AND subject = ? ORDER BY rowid",
                (command, subject),
            )
            return [item_id for (item_id,) in found]
        except sqlite3.OperationalError:  # not made yet
            return []


def test_a_listing_killed_again_and_again_resumes_buying_at_most_the_page_in_flight(
    serve: Serve, tmp_path: Path
) -> None:
    """SIGKILLed three times mid-listing, each rerun starts at the last page committed with
    its items: every item is stored once, in order, and each kill re-buys at most one page."""
    server = serve(latency=0.5)  # a stall of the test shorter than a page loses no slack
    endpoint = "get-tiktok-profile-videos"
    handle = _first(_handles("killdb"), lambda h: len(fake_profile_videos(h)), at_least=45)
    truth = [v["aweme_id"] for v in fake_profile_videos(handle)]
    database = tmp_path / "results.db"
    args = ["videos", handle, "-o", str(database), "--base-url", server.url, "-q"]
    kills = 0
    for _ in range(3):
        stored = len(_items(database, "videos", handle))
        proc = subprocess.Popen(
            [*CLI, *args], env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and len(_items(database, "videos", handle)) <= stored:
                time.sleep(0.01)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        kills += 1
        held = _items(database, "videos", handle)
        assert held == truth[: len(held)] and len(held) % 10 == 0  # whole pages only
        assert len(held) > stored
    assert len(_items(database, "videos", handle)) < len(truth)  # a listing left unfinished

    finished = run_cli(*args)
    assert finished.returncode == 0, finished.stderr
    assert _items(database, "videos", handle) == truth
    pages = cursors(server, endpoint, handle)
    assert len(pages) == -(-len(truth) // 10)  # every page bought
    assert set(pages.values()) <= {1, 2} and sum(pages.values()) - len(pages) <= kills
    requests = server.requests
    again = run_cli(*args[:-1])
    assert again.returncode == 0 and "nothing to fetch" in again.stderr
    assert server.requests == requests  # a finished listing is not bought again


def test_listings_and_profiles_share_a_database_and_overwrite_starts_only_its_own(
    serve: Serve, tmp_path: Path
) -> None:
    """Two listings and the profiles in one database each resume on their own; --overwrite
    fetches one listing afresh and leaves the other and the profiles as they were."""
    server = serve()
    database = tmp_path / "results.db"
    videos_of = LISTINGS["videos"][2]("shared")
    followers_of = LISTINGS["followers"][2]("shared")
    source = write_lines(tmp_path / "in.txt", handles(6, "dbshare"))

    def run(*args: str) -> None:
        result = run_cli(*args, "-o", str(database), "--base-url", server.url, "-q")
        assert result.returncode == 0, result.stderr

    run("videos", videos_of)
    run("followers", followers_of)
    run("profiles", str(source))
    videos = _items(database, "videos", videos_of)
    followers = _items(database, "followers", followers_of)
    assert videos == LISTINGS["videos"][1](videos_of)
    assert followers == LISTINGS["followers"][1](followers_of)
    requests = server.requests
    run("videos", videos_of)
    run("followers", followers_of)
    run("profiles", str(source))
    assert server.requests == requests  # each found complete: nothing bought

    run("videos", videos_of, "--overwrite")
    assert _items(database, "videos", videos_of) == videos
    assert set(cursors(server, "get-tiktok-profile-videos", videos_of).values()) == {2}
    assert _items(database, "followers", followers_of) == followers
    assert set(server.charged.values()) == {1} and len(server.charged) == 6  # profiles kept
    assert server.requests == requests + len(videos) // 10 + 1


def test_export_of_a_listing_writes_what_the_command_writes_to_a_file(
    serve: Serve, tmp_path: Path
) -> None:
    """``export --listing`` writes the JSONL and CSV lines the listing command writes to
    a file; a listing the database does not hold, or no listing, says what it holds."""
    server = serve()
    database = tmp_path / "results.db"
    subject = LISTINGS["comments"][2]("export")
    base = ["comments", subject, "--base-url", server.url, "-q"]
    assert run_cli(*base, "-o", str(database)).returncode == 0
    for fmt in ("jsonl", "csv"):
        direct, exported = tmp_path / f"direct.{fmt}", tmp_path / f"exported.{fmt}"
        assert run_cli(*base, "-o", str(direct)).returncode == 0
        result = run_cli(
            "export", str(database), "--listing", "comments", subject, "-o", str(exported)
        )
        assert result.returncode == 0, result.stderr
        assert exported.read_bytes() == direct.read_bytes()
    assert jsonl_ids("comments", read_jsonl(exported.with_suffix(".jsonl"))) == LISTINGS[
        "comments"
    ][1](subject)

    missing = run_cli("export", str(database), "--listing", "videos", "someone_else")
    assert missing.returncode == 2 and f"comments {subject}" in missing.stderr
    profiles = run_cli("export", str(database), "-o", str(tmp_path / "profiles.jsonl"))
    assert profiles.returncode == 0 and "export one with --listing" in profiles.stderr
    assert (tmp_path / "profiles.jsonl").read_bytes() == b""


def test_a_listing_database_on_stdout_or_of_another_shape_is_refused_before_any_request(
    serve: Serve, tmp_path: Path
) -> None:
    """--format sqlite without a file, and a database another program made, exit 2 and
    send nothing."""
    server = serve()
    subject = LISTINGS["videos"][2]("refused")
    stdout = run_cli("videos", subject, "--format", "sqlite", "--base-url", server.url)
    assert stdout.returncode == 2 and "needs a file" in stdout.stderr
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE notes (text TEXT)")
    refused = run_cli("videos", subject, "-o", str(other), "--base-url", server.url)
    assert refused.returncode == 2 and "not a dumpling-async one" in refused.stderr
    assert server.requests == 0
