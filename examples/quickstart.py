"""Quickstart: one profile lookup, and the error handling worth writing around it.

Runs against the built-in fake server when no key is set; set DUMPLINGAI_API_KEY (and
optionally DUMPLINGAI_API_URL) to run it against the real API.

    python examples/quickstart.py [HANDLE ...]
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys

from dumpling_async import (
    AsyncDumplingClient,
    DumplingError,
    InsufficientCreditsError,
    InvalidHandleError,
    ProfileNotFoundError,
    RateLimitError,
)
from dumpling_async.testing import FakeDumplingServer


async def show(client: AsyncDumplingClient, handle: str) -> bool:
    """Look up one handle and print one line about it; False when it failed."""
    try:
        profile = await client.get_tiktok_profile(handle)
    except InvalidHandleError as exc:  # raised before any request: nothing was spent
        print(f"{handle!r}: not a TikTok handle ({exc})")
    except ProfileNotFoundError:  # 404: not charged
        print(f"{handle!r}: no such TikTok account")
    except RateLimitError as exc:  # 429 even after retries: back off for a while
        print(f"{handle!r}: rate limited, retry in {exc.retry_after or 60:.0f} s")
    except InsufficientCreditsError:  # 403: top up before trying anything else
        print("the account is out of credits")
    except DumplingError as exc:  # anything else: connection, timeout, 5xx, bad body
        print(f"{handle!r}: lookup failed: {exc}")
    else:
        user, stats = profile.user, profile.stats
        assert user is not None and stats is not None
        print(
            f"@{user.unique_id} ({user.nickname}): {stats.follower_count:,} followers, "
            f"{stats.video_count:,} videos, verified={user.verified}"
        )
        return True
    return False


async def main(handles: list[str]) -> int:
    async with contextlib.AsyncExitStack() as stack:
        if os.environ.get("DUMPLINGAI_API_KEY") or os.environ.get("DUMPLING_API_KEY"):
            client = AsyncDumplingClient()  # key and base URL from the environment
        else:
            server = await stack.enter_async_context(FakeDumplingServer())
            client = AsyncDumplingClient("offline-demo-key", base_url=server.url)
        await stack.enter_async_context(client)
        outcomes = [await show(client, handle) for handle in handles]
        print(f"credits spent: {client.credits_spent}; rate limit: {client.rate_limit.limit}")
    return 0 if outcomes[0] else 1


if __name__ == "__main__":
    names = sys.argv[1:] or ["stoolpresidente", "@Charlidamelio", "unknown_account", "no way!"]
    sys.exit(asyncio.run(main(names)))
