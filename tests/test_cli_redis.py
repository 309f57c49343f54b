"""End-to-end tests of ``profiles --shard K/N`` and ``profiles --redis-url``.

Several real CLI processes (``python -m dumpling_async``) run at once against one
``FakeDumplingServer`` served from a background thread, and, for ``--redis-url``, one real
redis-server on a free loopback port, so what the server charged and what Redis holds can
be checked afterwards.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from _redis import RedisProcess, free_port
from test_cli import (
    CLI,
    KEY,
    cli_env,
    read_jsonl,
    run_cli,
    write_lines,
)

from dumpling_async import InvalidHandleError, normalize_handle
from dumpling_async.redis import key_namespace
from dumpling_async.testing import FakeDumplingServer, RateLimitRule


def run_workers(
    *arg_lists: list[str], envs: list[dict[str, str]] | None = None, timeout: float = 60
) -> list[subprocess.CompletedProcess[str]]:
    """Run one CLI process per argument list (with extra environment), all at once."""
    extra = envs or [{} for _ in arg_lists]
    procs = [
        subprocess.Popen(
            [*CLI, *args],
            env=cli_env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        for args, env in zip(arg_lists, extra, strict=True)
    ]
    results = []
    try:
        for proc, args in zip(procs, arg_lists, strict=True):
            out, err = proc.communicate(timeout=timeout)
            results.append(subprocess.CompletedProcess(args, proc.returncode, out, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    for result in results:
        assert "Traceback" not in result.stderr, result.stderr
    return results


def shard_of(text: str, count: int) -> int:
    """The 1-based shard of an input line, computed here independently of the CLI."""
    try:
        handle = normalize_handle(text)
    except InvalidHandleError:
        return 1
    return int.from_bytes(hashlib.sha256(handle.encode()).digest()[:8], "big") % count + 1


def entry_id(text: str) -> str:
    """What an output record's "handle" holds for an input line."""
    try:
        return normalize_handle(text)
    except InvalidHandleError:
        return text


def test_shards_split_the_input_without_overlap(
    serve: Callable[..., FakeDumplingServer], tmp_path: Path
) -> None:
    """Three --shard K/3 workers together answer every distinct input exactly once."""
    server = serve()
    names = [f"creator_{i:04d}" for i in range(295)]
    lines = [
        *names[:100],
        "@CREATOR_0001",
        "not a handle!",
        *names[100:200],
        f"https://www.tiktok.com/@{names[150]}?lang=en",
        "x",
        *names[200:],
        "Creator_0294",
    ]
    source = write_lines(tmp_path / "in.txt", lines)
    outs = [tmp_path / f"part{k}.jsonl" for k in (1, 2, 3)]
    args = [
        ["profiles", str(source), "--shard", f"{k}/3", "-o", str(out), "--base-url", server.url]
        for k, out in zip((1, 2, 3), outs, strict=True)
    ]
    results = run_workers(*args)

    expected = {entry_id(line) for line in lines}
    assert len(expected) == 295 + 2
    parts = [read_jsonl(out) for out in outs]
    union = Counter(r["handle"] for part in parts for r in part)
    assert union == Counter(expected)  # every distinct input once, across all shards
    for k, part in enumerate(parts, start=1):
        assert part and all(shard_of(r["input"], 3) == k for r in part)  # disjoint shards
        assert f"shard {k}/3" in " ".join(results[k - 1].stderr.split())
        assert "not attempted" not in results[k - 1].stderr  # its total was the shard's
    assert [r.returncode for r in results] == [1, 0, 0], [r.stderr for r in results]
    invalid = [r for r in parts[0] if not r["ok"]]
    assert {r["handle"] for r in invalid} == {"not a handle!", "x"}
    assert server.charged == Counter(names)  # each unique valid handle charged once

    requests = server.requests
    rerun = run_cli(*args[0], "-q")  # a worker resumes its own part: nothing is sent again
    assert rerun.returncode == 1 and server.requests == requests


def test_redis_workers_share_quota_and_budget(
    serve: Callable[..., FakeDumplingServer], redis_server: RedisProcess, tmp_path: Path
) -> None:
    """Concurrent --redis-url workers stay within the quota and never overspend --max-credits."""
    server = serve(rate_limit=RateLimitRule(40, 0.5))
    budget = 4005  # 400 profiles of 10 credits; 5 over, never enough for a 401st
    names = [f"worker_{i:04d}" for i in range(1300)]  # > 400 in each shard
    lines = names[:200] + [f"unknown_{i}" for i in range(10)] + names[200:]
    source = write_lines(tmp_path / "in.txt", lines)
    outs = [tmp_path / f"part{k}.jsonl" for k in (1, 2, 3)]
    args = [
        ["profiles", str(source), "--shard", f"{k}/3", "-o", str(out), "--base-url", server.url]
        + ["--max-credits", str(budget)]
        + (["--redis-url", redis_server.url] if k < 3 else [])
        for k, out in zip((1, 2, 3), outs, strict=True)
    ]
    # The third worker finds Redis through the environment instead of the option.
    envs = [{}, {}, {"DUMPLINGAI_REDIS_URL": redis_server.url}]
    results = run_workers(*args, envs=envs)

    assert server.credits_charged == 4000  # within budget, and exact to the profile
    assert server.rate_limited <= 0.02 * server.requests, (server.rate_limited, server.requests)
    assert set(server.charged.values()) == {1}
    ok: set[str] = set()
    spent = 0
    for result, out in zip(results, outs, strict=True):
        records = read_jsonl(out)
        assert Counter(r["handle"] for r in records).most_common(1)[0][1] == 1
        ok |= {r["handle"] for r in records if r["ok"]}
        stopped = [
            r for r in records if not r["ok"] and r["error"]["type"] != "ProfileNotFoundError"
        ]
        assert stopped and {r["error"]["type"] for r in stopped} == {"BudgetExceededError"}
        text = " ".join(result.stderr.split())
        assert f"BudgetExceededError {len(stopped)} (not sent: credit budget)" in text
        assert result.returncode == 1, result.stderr  # budget-limited: not everything done
        assert "shared credit budget reached" in text and "not attempted" in text
        assert "of 4005 (all --redis-url workers)" in text
        match = re.search(r"credits spent (\d+)", text)
        assert match is not None, text
        spent += int(match.group(1))  # this worker's own spending
        assert KEY not in result.stderr and KEY not in result.stdout
    assert ok == set(server.charged)
    assert spent == 4000

    client = redis.Redis.from_url(redis_server.url)
    try:
        keys = [k.decode() for k in client.keys("*")]
        assert keys and all(k.startswith(key_namespace(KEY) + ":") for k in keys)
        assert int(client.get(f"{key_namespace(KEY)}:budget:spent") or 0) == 4000
    finally:
        client.close()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0/3", "K must be between 1 and N"),
        ("4/3", "K must be between 1 and N"),
        ("x", "expected K/N"),
    ],
)
def test_bad_shard_exits_2(
    serve: Callable[..., FakeDumplingServer], tmp_path: Path, value: str, message: str
) -> None:
    """A --shard value other than K/N with 1 <= K <= N exits 2 with a clear message."""
    server = serve()
    source = write_lines(tmp_path / "in.txt", ["alice", "bob"])
    out = tmp_path / "out.jsonl"
    result = run_cli(
        "profiles", str(source), "--shard", value, "-o", str(out), "--base-url", server.url
    )
    assert result.returncode == 2
    assert "--shard" in result.stderr and message in result.stderr
    assert server.requests == 0 and not out.exists()


def test_redis_configuration_errors_exit_2(
    serve: Callable[..., FakeDumplingServer], tmp_path: Path
) -> None:
    """Without the redis package, or with an unreachable or malformed URL, exit 2 at once."""
    server = serve()
    source = write_lines(tmp_path / "in.txt", ["alice"])
    base = ["profiles", str(source), "--base-url", server.url]
    no_package = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.modules['redis'] = None\nfrom dumpling_async.cli import main; main()",
            *base,
            "--redis-url",
            "redis://127.0.0.1:6379/0",
        ],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=60,
        check=False,
    )
    assert no_package.returncode == 2, no_package.stderr
    assert "pip install 'dumpling-async[redis]'" in no_package.stderr
    assert "Traceback" not in no_package.stderr

    closed = f"redis://user:hunter2@127.0.0.1:{free_port()}/0"
    unreachable = run_cli(*base, "--redis-url", closed)
    assert unreachable.returncode == 2 and "cannot reach Redis" in unreachable.stderr
    assert "hunter2" not in unreachable.stderr  # the URL's password is never shown

    malformed = run_cli(*base, "--redis-url", "http://127.0.0.1:6379")
    assert malformed.returncode == 2 and "invalid --redis-url" in malformed.stderr
    assert server.requests == 0
