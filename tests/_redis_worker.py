"""A worker process for the Redis tests: looks up its share of handles, prints a summary."""

from __future__ import annotations

import asyncio
import json
import sys

from dumpling_async import AsyncDumplingClient
from dumpling_async.redis import RedisCreditBudget, RedisRateLimiter


async def main(base_url: str, redis_url: str, handles: list[str], max_credits: int | None) -> None:
    key = "worker-shared-key"
    async with (
        RedisRateLimiter(redis_url, api_key=key) as limiter,
        RedisCreditBudget(redis_url, api_key=key, max_credits=max_credits) as budget,
        AsyncDumplingClient(
            key, base_url=base_url, rate_limiter=limiter, credit_budget=budget, max_concurrency=16
        ) as client,
    ):
        results = await client.gather_profiles(handles)
    summary = {
        "ok": sum(r.ok for r in results),
        "errors": sorted({type(r.error).__name__ for r in results if r.error}),
        "results": len(results),
    }
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    url, redis_url, start, count, credits = sys.argv[1:6]
    names = [f"user{i}" for i in range(int(start), int(start) + int(count))]
    asyncio.run(main(url, redis_url, names, int(credits) if credits != "none" else None))
