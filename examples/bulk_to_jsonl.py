"""Stream a large file of handles through iter_profiles into JSONL, under a credit budget.

    python examples/bulk_to_jsonl.py [HANDLES.txt] [OUT.jsonl] [MAX_CREDITS]

Memory stays flat however long the input: lines are read lazily, results are written as
they complete. Without arguments it makes up 500 handles and uses the fake server.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson

from dumpling_async import AsyncDumplingClient
from dumpling_async.testing import FakeDumplingServer, RateLimitRule


def read_handles(path: Path | None) -> Iterator[str]:
    if path is None:
        yield from (f"creator_{i}" if i % 25 else f"unknown_{i}" for i in range(500))
        return
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip() and not line.startswith("#"):
                yield line.strip()


async def main(source: Path | None, out: Path, max_credits: int) -> int:
    async with contextlib.AsyncExitStack() as stack:
        options: dict[str, str] = {}
        if not (os.environ.get("DUMPLINGAI_API_KEY") or os.environ.get("DUMPLING_API_KEY")):
            fake = await stack.enter_async_context(
                FakeDumplingServer(rate_limit=RateLimitRule(200, 1.0))
            )
            options = {"api_key": "offline-demo-key", "base_url": fake.url}
        client = await stack.enter_async_context(
            AsyncDumplingClient(max_credits=max_credits, **options)
        )
        outcomes: Counter[str] = Counter()
        with out.open("wb") as sink:
            async for result in client.iter_profiles(read_handles(source)):
                record = {"index": result.index, "handle": result.handle, "ok": result.ok}
                if result.profile is not None:
                    record["profile"] = result.profile.raw
                else:
                    record["error"] = type(result.error).__name__
                sink.write(orjson.dumps(record) + b"\n")
                outcomes["ok" if result.ok else type(result.error).__name__] += 1
        print(dict(outcomes), f"credits spent: {client.credits_spent} of {max_credits}")
    return 0


if __name__ == "__main__":
    args = sys.argv[1:]
    source = Path(args[0]) if args else None
    out = Path(args[1]) if len(args) > 1 else Path("profiles.jsonl")
    budget = int(args[2]) if len(args) > 2 else 3000
    raise SystemExit(asyncio.run(main(source, out, budget)))
