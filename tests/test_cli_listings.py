"""End-to-end tests of the listing commands (``videos``, ``comments``, ``followers``,
``following``, ``search``) and ``transcript``.

As in ``test_cli.py``, each test runs the real CLI in a subprocess against a
``FakeDumplingServer`` serving from a background thread, and checks the output against
the ``fake_*`` truth and the server's own request records. Independent runs are started
together to keep the file fast.
"""

from __future__ import annotations

import csv
import json
import math
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from test_cli import CLI, KEY, cli_env, read_jsonl, run_cli

from dumpling_async import VideoComment
from dumpling_async.cli._listing_items import COMMENT_SHAPE, item_line
from dumpling_async.testing import (
    FakeDumplingServer,
    fake_comments,
    fake_followers,
    fake_following,
    fake_profile_videos,
    fake_search_users,
    fake_transcript,
    fake_transcript_cues,
)

Serve = Callable[..., FakeDumplingServer]


def _first(candidates: Iterable[str], count: Callable[[str], int], at_least: int = 25) -> str:
    """The first candidate with at least *at_least* items, not a whole number of pages."""
    return next(c for c in candidates if count(c) >= at_least and count(c) % 10)


def _handles(kind: str) -> Iterable[str]:
    return (f"{kind}_{i:03d}" for i in range(500))


def _video_urls(author: str) -> Iterable[str]:
    return (f"https://www.tiktok.com/@{author}/video/{7300000000000000000 + i}" for i in range(500))


def _user_ids(entries: list[dict[str, Any]]) -> list[str]:
    return [entry["user"]["id"] for entry in entries]


# command -> (its endpoint, the truth's ids for a subject, a subject of 3+ pages for a tag)
LISTINGS: dict[str, tuple[str, Callable[[str], list[str]], Callable[[str], str]]] = {
    "videos": (
        "get-tiktok-profile-videos",
        lambda s: [v["aweme_id"] for v in fake_profile_videos(s)],
        lambda tag: _first(_handles(tag), lambda h: len(fake_profile_videos(h))),
    ),
    "comments": (
        "get-tiktok-video-comments",
        lambda s: [c["cid"] for c in fake_comments(s)],
        lambda tag: _first(_video_urls(tag), lambda u: len(fake_comments(u))),
    ),
    "followers": (
        "get-tiktok-user-followers",
        lambda s: _user_ids(fake_followers(s)),
        lambda tag: _first(_handles(tag), lambda h: len(fake_followers(h))),
    ),
    "following": (
        "get-tiktok-user-following",
        lambda s: _user_ids(fake_following(s)),
        lambda tag: _first(_handles(tag), lambda h: len(fake_following(h))),
    ),
    "search": (
        "search-tiktok-users",
        lambda s: _user_ids(fake_search_users(s)),
        lambda tag: _first((f"{tag} {w}" for w in range(500)), lambda q: len(fake_search_users(q))),
    ),
}


def run_many(*runs: list[str], key: str | None = KEY) -> list[subprocess.CompletedProcess[str]]:
    """Run several CLI invocations at once; their results in the order given."""
    procs = [
        subprocess.Popen(
            [*CLI, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            env=cli_env(key),
        )
        for args in runs
    ]
    results = []
    for args, proc in zip(runs, procs, strict=True):
        out, err = proc.communicate(timeout=60)
        assert "Traceback" not in err, err
        results.append(subprocess.CompletedProcess(args, proc.returncode, out, err))
    return results


def jsonl_ids(command: str, records: list[dict[str, Any]]) -> list[str]:
    if command == "videos":
        return [r["aweme_id"] for r in records]
    if command == "comments":
        return [r["cid"] for r in records]
    return [r["user"]["id"] for r in records]


def cursors(server: FakeDumplingServer, endpoint: str, subject: str) -> Counter[str | None]:
    return Counter(r.cursor for r in server.requests_to(endpoint, subject) if r.status == 200)


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def state(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(out.with_name(out.name + ".cursor.json").read_text())
    return data


def test_each_listing_writes_the_servers_items(serve: Serve, tmp_path: Path) -> None:
    """Every listing writes exactly the fake server's items, one request per page."""
    server = serve()
    subjects = {command: pick("alpha") for command, (_, _, pick) in LISTINGS.items()}
    outs = {command: tmp_path / f"{command}.jsonl" for command in LISTINGS}
    limited = LISTINGS["search"][2]("beta")
    *runs, short = run_many(
        *([c, subjects[c], "-o", str(outs[c]), "--base-url", server.url] for c in LISTINGS),
        ["search", limited, "--limit", "15", "--base-url", server.url, "-q"],
    )
    for (command, (endpoint, truth, _)), run in zip(LISTINGS.items(), runs, strict=True):
        subject = subjects[command]
        assert run.returncode == 0, run.stderr
        assert jsonl_ids(command, read_jsonl(outs[command])) == truth(subject)
        pages = math.ceil(len(truth(subject)) / 10)
        assert len(server.requests_to(endpoint, subject)) == pages
        assert re.search(rf"credits spent +{pages * 10} ", run.stderr), run.stderr
        assert re.search(r"listing +complete", run.stderr), run.stderr
        assert state(outs[command])["finished"] is True

    # --limit stops after the items it asks for: 15 items, 2 pages, nothing on stderr.
    assert short.returncode == 0, short.stderr
    records = [json.loads(line) for line in short.stdout.splitlines()]
    assert jsonl_ids("search", records) == LISTINGS["search"][1](limited)[:15]
    assert len(server.requests_to("search-tiktok-users", limited)) == 2
    assert short.stderr == ""


def test_csv_columns_and_limit(serve: Serve, tmp_path: Path) -> None:
    """CSV has each kind's fixed columns from the server's items; --limit 15 buys 2 pages."""
    server = serve()
    handle, url, follows = (LISTINGS[c][2]("csv") for c in ("videos", "comments", "following"))
    outs = [tmp_path / f"{name}.csv" for name in ("videos", "comments", "following")]
    results = run_many(
        *(
            [command, subject, "-o", str(out), "--limit", "15", "--base-url", server.url, "-q"]
            for command, subject, out in zip(
                ("videos", "comments", "following"), (handle, url, follows), outs, strict=True
            )
        )
    )
    assert [r.returncode for r in results] == [0, 0, 0], [r.stderr for r in results]
    for endpoint, subject in (
        ("get-tiktok-profile-videos", handle),
        ("get-tiktok-video-comments", url),
        ("get-tiktok-user-following", follows),
    ):
        assert len(server.requests_to(endpoint, subject)) == 2
    tables = []
    for out in outs:
        with out.open(newline="", encoding="utf-8") as stream:
            tables.append(list(csv.DictReader(stream)))
    assert [len(table) for table in tables] == [15, 15, 15]
    videos, comments, following = tables
    assert list(videos[0]) == [
        "aweme_id",
        "url",
        "desc",
        "create_time",
        "play_count",
        "digg_count",
        "comment_count",
        "share_count",
    ]
    for row, video in zip(videos, fake_profile_videos(handle)[:15], strict=True):
        assert row["aweme_id"] == video["aweme_id"] and row["desc"] == video["desc"]
        assert row["url"] == video["share_url"]
        assert int(row["play_count"]) == video["statistics"]["play_count"]
        assert int(row["create_time"]) == video["create_time"]
    assert list(comments[0]) == [
        "cid",
        "user",
        "text",
        "create_time",
        "digg_count",
        "reply_comment_total",
    ]
    for row, comment in zip(comments, fake_comments(url)[:15], strict=True):
        assert row["cid"] == comment["cid"] and row["user"] == comment["user"]["unique_id"]
        assert row["text"] == comment["text"]
        assert int(row["reply_comment_total"]) == comment["reply_comment_total"]
    assert list(following[0]) == [
        "id",
        "unique_id",
        "nickname",
        "verified",
        "follower_count",
        "following_count",
        "heart_count",
        "video_count",
    ]
    for row, entry in zip(following, fake_following(follows)[:15], strict=True):
        user, stats = entry["user"], entry["stats"]
        assert (row["id"], row["unique_id"], row["nickname"]) == (
            user["id"],
            user["uniqueId"],
            user["nickname"],
        )
        assert row["verified"] == str(user["verified"]).lower()
        assert int(row["follower_count"]) == stats["followerCount"]
        assert int(row["video_count"]) == stats["videoCount"]


def test_csv_cells_cannot_run_as_formulas() -> None:
    """Text a spreadsheet would run as a formula is quoted, and stays on one line."""
    comment = VideoComment(cid="1", text='=HYPERLINK("http://x")\nsecond line', digg_count=-3)
    line = item_line(COMMENT_SHAPE, comment, "1", "csv")
    assert line.count(b"\n") == 1
    row = next(csv.reader([line.decode()]))
    assert row[2] == '\'=HYPERLINK("http://x") second line'
    assert row[4] == "-3"  # numbers are left alone


def test_resume_after_a_failed_page_and_a_credit_stop(serve: Serve, tmp_path: Path) -> None:
    """A page failing after retries, then --max-credits, stop the run (exit 1); reruns resume
    where it stopped and buy no page twice."""
    server = serve()
    endpoint = "get-tiktok-profile-videos"
    handle = LISTINGS["videos"][2]("flaky")
    server.inject("500", "500", "500", handle=handle, skip=1)  # page 2 fails all 3 attempts
    truth = [v["aweme_id"] for v in fake_profile_videos(handle)]
    out = tmp_path / "videos.csv"
    args = ["videos", handle, "-o", str(out), "--base-url", server.url]

    def written() -> list[str]:
        with out.open(newline="", encoding="utf-8") as stream:
            return [row["aweme_id"] for row in csv.DictReader(stream)]

    failed = run_cli(*args)
    assert failed.returncode == 1, failed.stderr
    assert written() == truth[:10]
    cursor = server.requests_to(endpoint, handle)[-1].cursor
    assert cursor is not None
    assert "ServerError" in failed.stderr and f"--start-cursor {cursor}" in failed.stderr
    assert state(out)["cursor"] == cursor and state(out)["finished"] is False

    stopped = run_cli(*args, "-q", "--max-credits", "10")
    assert stopped.returncode == 1, stopped.stderr
    assert "credit budget reached" in stopped.stderr
    assert "run the same command again" in stopped.stderr
    assert written() == truth[:20]

    resumed = run_cli(*args, "-q")
    assert resumed.returncode == 0, resumed.stderr
    assert written() == truth
    pages = cursors(server, endpoint, handle)
    assert set(pages.values()) == {1}  # no page bought twice
    assert [r.cursor for r in server.requests_to(endpoint, handle)].count(None) == 1
    assert server.credits_charged == 10 * len(pages)


def test_limit_then_resume_cuts_torn_line_and_finished_rerun_does_nothing(
    serve: Serve, tmp_path: Path
) -> None:
    """A --limit run resumes mid-page (torn line cut, nothing twice); a finished rerun is free."""
    server = serve()
    endpoint = "get-tiktok-user-followers"
    handle = LISTINGS["followers"][2]("resume")
    truth = _user_ids(fake_followers(handle))
    out = tmp_path / "followers.jsonl"
    args = ["followers", handle, "-o", str(out), "--base-url", server.url]
    limited = run_cli(*args, "--limit", "15", "-q")
    assert limited.returncode == 0, limited.stderr
    assert jsonl_ids("followers", read_jsonl(out)) == truth[:15]
    second_page = state(out)["cursor"]
    assert second_page == server.requests_to(endpoint, handle)[-1].cursor
    with out.open("ab") as stream:
        stream.write(b'{"user":{"id":"12')  # a run killed mid-line

    resumed = run_cli(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert "torn last line removed" in resumed.stderr
    assert jsonl_ids("followers", read_jsonl(out)) == truth
    pages = cursors(server, endpoint, handle)
    assert pages.pop(second_page) == 2  # written in half: bought again, its items not
    assert set(pages.values()) == {1}

    content, requests = out.read_bytes(), server.requests
    # One after the other: run at once, the second could meet the first one's lock (exit
    # 2 as well, for another reason) instead of the listing mismatch checked here.
    again = run_cli(*args)
    other = run_cli("following", handle, "-o", str(out), "--base-url", server.url)
    assert again.returncode == 0 and "nothing to fetch" in again.stderr
    assert other.returncode == 2 and f"followers {handle}" in other.stderr
    assert "--overwrite" in other.stderr
    assert server.requests == requests and out.read_bytes() == content


def test_sigint_writes_the_page_in_flight_then_resumes(serve: Serve, tmp_path: Path) -> None:
    """SIGINT lets the page in flight be written whole (exit 130); the rerun buys no page twice."""
    server = serve(latency=0.25)
    endpoint = "get-tiktok-profile-videos"
    handle = _first(_handles("sigint"), lambda h: len(fake_profile_videos(h)), at_least=45)
    truth = [v["aweme_id"] for v in fake_profile_videos(handle)]
    out = tmp_path / "videos.jsonl"
    args = ["videos", handle, "-o", str(out), "--base-url", server.url, "-q"]
    proc = subprocess.Popen(
        [*CLI, *args], env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _lines(out) < 10:
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "interrupted (SIGINT)" in err
    written = jsonl_ids("videos", read_jsonl(out))
    assert len(written) % 10 == 0 and 10 <= len(written) < len(truth)
    assert written == truth[: len(written)]
    saved = state(out)["cursor"]
    assert saved is not None and len(server.requests_to(endpoint, handle)) == len(written) // 10

    resumed = run_cli(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert jsonl_ids("videos", read_jsonl(out)) == truth
    assert server.requests_to(endpoint, handle)[len(written) // 10].cursor == saved
    assert set(cursors(server, endpoint, handle).values()) == {1}


def test_simulate_needs_no_key() -> None:
    """--simulate lists from the built-in fake server without any key."""
    query = "cooking"
    result = run_cli("search", query, "--simulate", "-q", key=None)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert jsonl_ids("search", records) == _user_ids(fake_search_users(query))


def test_bad_input_exits_2_before_any_request(serve: Serve, tmp_path: Path) -> None:
    """An invalid handle, video URL or query exits 2 with no request and no file."""
    server = serve()
    out = tmp_path / "out.jsonl"
    base = ["-o", str(out), "--base-url", server.url]
    results = run_many(
        ["videos", "not a handle!", *base],
        ["comments", "https://example.com/watch?v=1", *base],
        ["search", "   ", *base],
    )
    for result in results:
        assert result.returncode == 2, (result.args, result.stderr)
        assert "Invalid" in result.stderr or "invalid" in result.stderr
    assert server.requests == 0
    assert not list(tmp_path.iterdir())


def test_transcript_formats_and_no_subtitles(serve: Serve, tmp_path: Path) -> None:
    """transcript prints the text, the WebVTT as sent, or JSON cues; no subtitles exits 1."""
    server = serve()
    url = next(u for u in _video_urls("speaker") if fake_transcript(u) is not None)
    missing = "https://www.tiktok.com/@speaker/video/7300000000000000000?nosubs=1"
    as_json = tmp_path / "t.json"
    base = ["--base-url", server.url]
    text, vtt, to_file, none = run_many(
        ["transcript", url, *base],
        ["transcript", url, "--format", "vtt", *base],
        ["transcript", url, "--format", "json", "-o", str(as_json), "--language", "de", *base],
        ["transcript", missing, *base],
    )
    cues = fake_transcript_cues(url)
    assert text.returncode == 0, text.stderr
    assert text.stdout == "\n".join(cue[2] for cue in cues) + "\n"
    answer = fake_transcript(url)
    assert answer is not None and vtt.stdout == answer["transcript"]
    assert to_file.returncode == 0 and to_file.stdout == ""
    document = json.loads(as_json.read_text(encoding="utf-8"))
    assert document["language"] == "de" and document["original_url"] == url
    assert document["id"] == url.rsplit("/", 1)[1]
    assert [(c["start"], c["end"], c["text"]) for c in document["cues"]] == [
        tuple(cue) for cue in fake_transcript_cues(url, "de")
    ]
    assert none.returncode == 1 and "no subtitles" in none.stderr and none.stdout == ""


def test_account_errors_exit_3_and_the_key_is_never_shown(serve: Serve, tmp_path: Path) -> None:
    """401 and 403 exit 3 (403 after writing the pages it paid for); the key is never shown."""
    secret = "sk-live-DO-NOT-PRINT-27182"
    rejecting, poor = serve(api_keys={"other"}), serve(credits=15)
    handle = LISTINGS["following"][2]("account")
    outs = [tmp_path / "a.jsonl", tmp_path / "b.csv"]
    common = ["-v", "--log-format", "json", "--api-key", secret]
    rejected, broke = run_many(
        ["videos", handle, "-o", str(outs[0]), "--base-url", rejecting.url, *common],
        ["following", handle, "-o", str(outs[1]), "--base-url", poor.url, *common],
        key=None,
    )
    assert rejected.returncode == 3 and "401" in rejected.stderr
    assert broke.returncode == 3 and "Insufficient credits" in broke.stderr
    assert len(outs[1].read_text(encoding="utf-8").splitlines()) == 1 + 10
    for result in (rejected, broke):
        assert secret not in result.stdout and secret not in result.stderr
    for path in tmp_path.iterdir():
        assert secret not in path.read_text(encoding="utf-8")


def test_credit_costs_price_the_budget(serve: Serve, tmp_path: Path) -> None:
    """--credit-cost sets what a page costs, so --max-credits stops where the plan says."""
    server = serve(costs={"search-tiktok-users": 3})
    query = _first((f"cooks {n}" for n in range(500)), lambda q: len(fake_search_users(q)))
    out = tmp_path / "users.jsonl"
    result = run_cli(
        "search", query, "-o", str(out), "-q", "--max-credits", "7",
        "--credit-cost", "search_users=3", "--base-url", server.url,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr  # stopped by the budget
    assert len(server.requests_to("search-tiktok-users")) == 2  # 2 x 3 credits fit in 7
    assert server.credits_charged == 6 and _lines(out) == 2 * server.page_size
    bad = run_cli("search", query, "--credit-cost", "search=3", "--base-url", server.url)
    assert bad.returncode == 2 and "search_users" in bad.stderr
