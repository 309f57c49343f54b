"""A worker process for the cross-process lane test: one RedisRateLimiter on a shared key,
driven one step at a time by JSON lines on stdin, each answered by a JSON line on stdout.

    python _lane_worker.py REDIS_URL API_KEY INTERACTIVE_SHARE

Steps: ``{"do": "drain", "units": n, "limit": l}`` takes n bulk permits, each answered as
the server would (``remaining`` counting down from l); ``{"do": "acquire", "priority": p,
"max_wait": s, "limit": l, "remaining": r}`` asks for one permit and, when granted,
settles it with that answer; ``{"do": "quit"}`` ends it.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import orjson

from dumpling_async import MaxWaitExceededError, ResponseInfo
from dumpling_async.redis import RedisRateLimiter


async def _step(limiter: RedisRateLimiter, step: dict[str, Any]) -> dict[str, Any]:
    if step["do"] == "drain":
        limit = step["limit"]
        for used in range(1, step["units"] + 1):
            permit = await limiter.acquire(priority="bulk")
            answer = ResponseInfo(status=200, limit=limit, remaining=limit - used)
            await limiter.settle(permit, answer)
        return {"drained": step["units"]}
    if step["do"] != "acquire":
        raise ValueError(f"unknown step {step['do']!r}")
    started = time.monotonic()
    try:
        permit = await limiter.acquire(priority=step["priority"], max_wait=step["max_wait"])
    except MaxWaitExceededError as exc:
        return {"granted": False, "retry_after": exc.retry_after}
    took = time.monotonic() - started
    answer = ResponseInfo(status=200, limit=step["limit"], remaining=step["remaining"])
    await limiter.settle(permit, answer)
    return {"granted": True, "took": took}


async def main(redis_url: str, api_key: str, share: float) -> None:
    loop = asyncio.get_running_loop()
    async with RedisRateLimiter(redis_url, api_key=api_key, interactive_share=share) as limiter:
        print(orjson.dumps({"ready": True}).decode(), flush=True)
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            step = orjson.loads(line)
            if step["do"] == "quit":
                break
            print(orjson.dumps(await _step(limiter, step)).decode(), flush=True)


if __name__ == "__main__":
    url, key, share = sys.argv[1:4]
    asyncio.run(main(url, key, float(share)))
