"""A worker process for the shared-cache tests: waits until every worker is ready, looks
up one handle through a ``RedisCache``, prints a summary."""

from __future__ import annotations

import asyncio
import json
import sys
import time

import redis.asyncio as aioredis

from dumpling_async import AsyncDumplingClient, DumplingError
from dumpling_async.redis import RedisCache


async def main(base_url: str, redis_url: str, handle: str, workers: int, lease: float) -> None:
    key = "worker-shared-key"
    async with aioredis.Redis.from_url(redis_url) as barrier:
        await barrier.incr("test:ready")
        deadline = time.monotonic() + 30
        while int(await barrier.get("test:ready") or 0) < workers:  # all start together
            if time.monotonic() > deadline:
                raise SystemExit("the other workers never came")
            await asyncio.sleep(0.002)
    async with (
        RedisCache(redis_url, api_key=key, lease=lease) as cache,
        AsyncDumplingClient(key, base_url=base_url, cache=cache) as client,
    ):
        print(json.dumps({"started": True}), flush=True)
        try:
            profile = await client.get_tiktok_profile(handle)
            outcome = profile.user.unique_id if profile.user else None
        except DumplingError as exc:
            outcome = type(exc).__name__
        summary = {"outcome": outcome, "hits": cache.hits, "spent": client.credits_spent}
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    url, redis_url, handle, workers, lease = sys.argv[1:6]
    asyncio.run(main(url, redis_url, handle, int(workers), float(lease)))
