"""Four worker processes on one API key: a shared Redis limiter against local limiters.

    python -m benchmarks.distributed [--workers 4] [--limit 60] [--window 1.0] [--handles 1200]
                                     [--algorithm sliding] [--latency SECONDS]

One fake server (its own process, a sliding-window limit unless ``--algorithm`` says
otherwise) serves every worker. In the
"redis" run the workers share a RedisRateLimiter and a RedisCreditBudget; in the "local"
run each uses its own AdaptiveRateLimiter, unaware of the others. ``--latency SECONDS``:
the server answers every counted request that much later
(``AnswerTime(mean=SECONDS)``, uniform 0.5-1.5 x the mean), in every run, the budget
test's too. Efficiency is defined as in ``benchmarks.ratelimit``: the ideal time for the
quota, (handles - limit) / rate (the first window's free burst not counted; handles =
those delivered), plus the mean answer time, over the time until the last worker is
done; the 429 share is of all requests the server saw. Targets (the redis run):
efficiency >= 0.90 and 429s <= 1 %, at any answer time, every handle delivered. Needs
redis-server on PATH (a throwaway one is started on a free loopback port).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import TYPE_CHECKING, Any

from benchmarks._server import ServerProcess
from dumpling_async import AsyncDumplingClient
from dumpling_async.testing import ALGORITHMS, RateLimitRule

if TYPE_CHECKING:
    from dumpling_async.testing import AnswerTime

KEY = "distributed-bench-key"


async def _work(
    url: str, redis_url: str | None, handles: list[str], budget: int | None, prefix: str
) -> dict[str, Any]:
    from dumpling_async.redis import RedisCreditBudget, RedisRateLimiter

    options: dict[str, Any] = {"max_credits": budget}
    closers = []
    if redis_url is not None:
        limiter = RedisRateLimiter(redis_url, api_key=KEY, prefix=prefix)
        shared = RedisCreditBudget(redis_url, api_key=KEY, max_credits=budget, prefix=prefix)
        options = {"rate_limiter": limiter, "credit_budget": shared}
        closers = [limiter, shared]
    async with AsyncDumplingClient(KEY, base_url=url, **options) as client:
        results = await client.gather_profiles(handles)
    for closer in closers:
        await closer.aclose()
    return {
        "ok": sum(r.ok for r in results),
        "done_at": time.monotonic(),
        "client_429s": client.rate_limit.rate_limited,
    }


def _worker(args: tuple[str, str | None, list[str], int | None, float, str]) -> dict[str, Any]:
    url, redis_url, handles, budget, start_at, prefix = args
    time.sleep(max(0.0, start_at - time.monotonic()))  # all workers start together
    return asyncio.run(_work(url, redis_url, handles, budget, prefix))


def _answer_time(latency: float) -> AnswerTime:
    from dumpling_async.testing import AnswerTime

    return AnswerTime(mean=latency)


def _run(
    mode: str,
    rule: RateLimitRule,
    workers: int,
    n: int,
    redis_url: str,
    budget: int | None,
    latency: float = 0.0,
) -> dict[str, Any]:
    handles = [f"user{i}" for i in range(n)]
    shares = [handles[k::workers] for k in range(workers)]
    options = {"latency": _answer_time(latency), "latency_seed": 1} if latency else {}
    with (
        ServerProcess(rule, options=options) as server,
        multiprocessing.get_context("spawn").Pool(workers) as pool,
    ):
        start_at = time.monotonic() + 2.0  # time for every worker to import and wait
        prefix = f"bench-{time.time_ns()}"  # a fresh shared state for every run
        jobs = [
            (server.url, redis_url if mode == "redis" else None, s, budget, start_at, prefix)
            for s in shares
        ]
        outs = pool.map(_worker, jobs)
        stats = server.stats()
    elapsed = max(o["done_at"] for o in outs) - start_at
    print(f"  {mode}: {n} handles in {elapsed:.1f} s", file=sys.stderr, flush=True)
    ok = sum(o["ok"] for o in outs)
    return {
        "mode": mode,
        "elapsed": elapsed,
        "ok": ok,
        "requests": stats.requests,
        "rate_limited": stats.rate_limited,
        "share_429": stats.rate_limited_share,
        # of what was delivered; nothing delivered is no efficiency, however fast
        "efficiency": (ideal_seconds(rule, ok) + latency) / elapsed if ok else 0.0,
        "credits": stats.credits_charged,
        "max_charges": stats.max_charges_per_handle,
    }


def ideal_seconds(rule: RateLimitRule, handles: int) -> float:
    """(handles - limit) / rate: the free first window is not counted."""
    return max(0, handles - rule.limit) / (rule.limit / rule.window)


def _redis() -> tuple[subprocess.Popen[bytes], str, tempfile.TemporaryDirectory[str]]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found (make test installs it)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    tmp = tempfile.TemporaryDirectory()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", tmp.name],
        stdout=subprocess.DEVNULL,
    )
    for _ in range(500):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.01)
    return proc, f"redis://127.0.0.1:{port}/0", tmp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--limit", type=int, default=60)
    parser.add_argument("--window", type=float, default=1.0)
    parser.add_argument("--handles", type=int, default=1200)
    parser.add_argument("--algorithm", choices=ALGORITHMS, default="sliding")
    parser.add_argument(
        "--latency",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="the server's mean answer time (AnswerTime(mean=SECONDS)); default 0",
    )
    parser.add_argument(
        "--budget-handles",
        type=int,
        default=1000,
        help="the budget test: 4 workers, budget for this many profiles",
    )
    args = parser.parse_args()
    if args.latency < 0:
        parser.error("--latency must be >= 0")
    rule = RateLimitRule(args.limit, args.window, args.algorithm)
    proc, redis_url, tmp = _redis()
    try:
        rows = [
            _run(mode, rule, args.workers, args.handles, redis_url, None, args.latency)
            for mode in ("redis", "local")
        ]
        budget = 10 * args.budget_handles + 5  # not a multiple of 10: exact to the credit
        fast = RateLimitRule(100_000, 1.0, "sliding")
        spent = _run(
            "redis", fast, args.workers, 3 * args.budget_handles, redis_url, budget, args.latency
        )
    finally:
        proc.terminate()
        proc.wait()
        tmp.cleanup()
    answers = f"answers in {args.latency:g} s (mean)" if args.latency else "answers at once"
    print(
        f"{args.workers} workers, one key, server limit {args.limit} per {args.window:g} s "
        f"({args.algorithm}), {answers}, {args.handles} unique handles; efficiency = "
        f"({ideal_seconds(rule, args.handles):.1f} s ideal ((handles - limit) / rate) + "
        f"{args.latency:g} s answer time) / elapsed"
    )
    print(
        f"{'limiter':<8} {'elapsed s':>9} {'efficiency':>10} {'requests':>9} "
        f"{'429s':>6} {'429 %':>7} {'ok':>6} {'credits':>8} {'max charges':>11}"
    )
    for r in rows:
        print(
            f"{r['mode']:<8} {r['elapsed']:>9.2f} {r['efficiency']:>10.2f} {r['requests']:>9} "
            f"{r['rate_limited']:>6} {r['share_429']:>7.2%} {r['ok']:>6} {r['credits']:>8} "
            f"{r['max_charges']:>11}"
        )
    print(
        f"shared budget: max_credits={budget}, {args.workers} workers x 16 in flight, "
        f"{3 * args.budget_handles} handles: server charged {spent['credits']} credits "
        f"({'never exceeded' if spent['credits'] <= budget else 'EXCEEDED'}, "
        f"{budget - spent['credits']} left unspent)"
    )
    redis_row = rows[0]
    met = (
        redis_row["share_429"] <= 0.01
        and redis_row["efficiency"] >= 0.90
        and redis_row["ok"] == args.handles
    )
    verdict = "met" if met else "NOT met"
    print(f"targets, {answers} (redis: 429s <= 1 %, efficiency >= 0.90): {verdict}")


if __name__ == "__main__":
    main()
