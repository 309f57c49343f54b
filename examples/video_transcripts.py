"""Walk a creator's videos and fetch their transcripts, within a credit budget.

The budget covers everything the client spends: the pages of the video listing and
each transcript. When it runs out, the listing stops with BudgetExceededError (carrying
the cursor to resume from) and the remaining transcripts come back as
BudgetExceededError results, never as an overspend. Videos without subtitles are
TranscriptNotFoundError results, which are not charged.

Runs against the built-in fake server when no key is set; set DUMPLINGAI_API_KEY (and
optionally DUMPLINGAI_API_URL) to run it against the real API.

    python examples/video_transcripts.py [HANDLE] [MAX_CREDITS]
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys

from dumpling_async import (
    AsyncDumplingClient,
    BudgetExceededError,
    CreditCosts,
    DumplingError,
    TranscriptNotFoundError,
)
from dumpling_async.testing import FakeDumplingServer

# Only the profile's price is documented; put your plan's prices here.
COSTS = CreditCosts(profile_videos=10, transcript=5)


async def video_urls(client: AsyncDumplingClient, handle: str, limit: int) -> list[str]:
    """The URLs of up to *limit* of the creator's newest videos."""
    urls: list[str] = []
    pager = client.iter_profile_videos(handle, limit=limit, trim=True)
    try:
        async for video in pager:
            if video.url is not None:
                urls.append(video.url)
    except BudgetExceededError as exc:
        print(f"budget reached while listing; resume with start_cursor={exc.cursor!r}")
    print(f"@{handle}: {len(urls)} videos from {pager.pages} page(s)")
    return urls


async def main(handle: str, max_credits: int) -> int:
    async with contextlib.AsyncExitStack() as stack:
        if os.environ.get("DUMPLINGAI_API_KEY") or os.environ.get("DUMPLING_API_KEY"):
            client = AsyncDumplingClient(max_credits=max_credits, credit_costs=COSTS)
        else:
            server = await stack.enter_async_context(
                FakeDumplingServer(costs={"get-tiktok-transcript": COSTS.transcript})
            )
            client = AsyncDumplingClient(
                "offline-demo-key",
                base_url=server.url,
                max_credits=max_credits,
                credit_costs=COSTS,
            )
        await stack.enter_async_context(client)
        try:
            urls = await video_urls(client, handle, limit=30)
        except DumplingError as exc:
            print(f"could not list @{handle}'s videos: {exc}")
            return 1
        counts = {"ok": 0, "no subtitles": 0, "over budget": 0, "failed": 0}
        async for result in client.iter_transcripts(urls, concurrency=8):
            if result.transcript is not None:
                counts["ok"] += 1
                first = result.transcript.cues[0].text if result.transcript.cues else ""
                print(f"  {result.url}: {len(result.transcript.cues)} cues, {first[:40]!r}")
            elif isinstance(result.error, TranscriptNotFoundError):
                counts["no subtitles"] += 1
            elif isinstance(result.error, BudgetExceededError):
                counts["over budget"] += 1
            else:
                counts["failed"] += 1
        print(", ".join(f"{n} {label}" for label, n in counts.items()))
        print(f"credits spent: {client.credits_spent} of {max_credits}")
    return 0


if __name__ == "__main__":
    args = sys.argv[1:]
    name = args[0] if args else "stoolpresidente"
    budget = int(args[1]) if len(args) > 1 else 100
    sys.exit(asyncio.run(main(name, budget)))
