"""Several worker processes on one API key sharing one quota and one budget via Redis.

    python examples/redis_workers.py [--redis-url redis://host:6379/0] [--workers 3]

Each worker takes its share of the input with ``--shard K/N`` semantics (a stable hash of
the normalised handle), uses a RedisRateLimiter and a RedisCreditBudget, and writes its
own output. Without --redis-url it starts a throwaway redis-server on a free local port
(the binary must be installed); without DUMPLINGAI_API_KEY it uses the fake server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import shutil
import socket
import sys
import tempfile

from dumpling_async import AsyncDumplingClient, normalize_handle
from dumpling_async.redis import RedisCreditBudget, RedisRateLimiter
from dumpling_async.testing import FakeDumplingServer, RateLimitRule

HANDLES = [f"creator_{i}" for i in range(240)]


def in_shard(handle: str, k: int, n: int) -> bool:
    digest = hashlib.sha256(normalize_handle(handle).encode()).digest()
    return int.from_bytes(digest[:8], "big") % n == k - 1


async def worker(k: int, n: int, redis_url: str, base_url: str | None) -> None:
    key = os.environ["DUMPLINGAI_API_KEY"]  # passed by the parent, never on a command line
    mine = [h for h in HANDLES if in_shard(h, k, n)]
    async with (
        RedisRateLimiter(redis_url, api_key=key) as limiter,
        RedisCreditBudget(redis_url, api_key=key, max_credits=2000) as budget,  # for all
        AsyncDumplingClient(
            key, base_url=base_url, rate_limiter=limiter, credit_budget=budget
        ) as client,
    ):
        results = await client.gather_profiles(mine)
    ok = sum(r.ok for r in results)
    print(f"worker {k}/{n}: {len(mine)} handles, {ok} ok, shared spend {budget.spent}")


@contextlib.asynccontextmanager
async def throwaway_redis():  # type: ignore[no-untyped-def]
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server not found: install it or pass --redis-url")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        proc = await asyncio.create_subprocess_exec(
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            tmp,
            stdout=asyncio.subprocess.DEVNULL,
        )
        for _ in range(200):
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            await asyncio.sleep(0.02)
        try:
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            await proc.wait()


async def main(args: argparse.Namespace) -> int:
    if args.worker:
        k = int(args.worker)
        await worker(k, args.workers, args.redis_url, args.base_url)
        return 0
    async with contextlib.AsyncExitStack() as stack:
        redis_url = args.redis_url or await stack.enter_async_context(throwaway_redis())
        key = os.environ.get("DUMPLINGAI_API_KEY") or "offline-demo-key"
        base_url = os.environ.get("DUMPLINGAI_API_URL")
        fake = None
        if "DUMPLINGAI_API_KEY" not in os.environ:
            fake = await stack.enter_async_context(
                FakeDumplingServer(rate_limit=RateLimitRule(60, 1.0))
            )
            base_url = fake.url
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                __file__,
                "--worker",
                str(k),
                "--workers",
                str(args.workers),
                "--redis-url",
                redis_url,
                "--base-url",
                base_url or "",
                env={**os.environ, "DUMPLINGAI_API_KEY": key},
            )
            for k in range(1, args.workers + 1)
        ]
        codes = [await p.wait() for p in procs]
        if fake is not None:
            print(
                f"server: {fake.requests} requests, {fake.rate_limited} answered 429, "
                f"{fake.credits_charged} credits charged"
            )
    return max(codes)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis-url")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    raise SystemExit(asyncio.run(main(parser.parse_args())))
