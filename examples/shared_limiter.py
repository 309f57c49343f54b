"""Two services in one process, one API key: give both clients the same limiter.

Each client keeps its own connection pool and settings, but the quota is per key, so
they share one AdaptiveRateLimiter: together they never run into the server's limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

from dumpling_async import AdaptiveRateLimiter, AsyncDumplingClient
from dumpling_async.testing import FakeDumplingServer, RateLimitRule


async def main() -> int:
    async with contextlib.AsyncExitStack() as stack:
        options: dict[str, str] = {}
        fake = None
        if not (os.environ.get("DUMPLINGAI_API_KEY") or os.environ.get("DUMPLING_API_KEY")):
            fake = await stack.enter_async_context(
                FakeDumplingServer(rate_limit=RateLimitRule(30, 1.0))
            )
            options = {"api_key": "offline-demo-key", "base_url": fake.url}
        limiter = AdaptiveRateLimiter()
        search = await stack.enter_async_context(
            AsyncDumplingClient(rate_limiter=limiter, max_concurrency=4, **options)
        )
        enrich = await stack.enter_async_context(
            AsyncDumplingClient(rate_limiter=limiter, max_concurrency=8, **options)
        )
        a, b = await asyncio.gather(
            search.gather_profiles(f"searcher{i}" for i in range(40)),
            enrich.gather_profiles(f"enricher{i}" for i in range(40)),
        )
        state = limiter.snapshot()
        print(f"search: {sum(r.ok for r in a)} ok; enrich: {sum(r.ok for r in b)} ok")
        print(f"limit {state.limit}, throttled {state.throttled_seconds:.1f} s in total")
        if fake is not None:
            print(f"429s the server sent: {fake.rate_limited}")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
