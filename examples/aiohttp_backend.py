"""An aiohttp web backend that serves TikTok profiles to its own users.

One long-lived client per application, created in ``cleanup_ctx`` and shared by every
request: one connection pool, one rate limiter protecting the whole app, one credit
budget. Concurrent requests for the same handle share one upstream lookup.

    GET  /profiles/{handle}   200 profile JSON | 400 invalid | 404 unknown
                              | 429 quota exhausted (Retry-After passed on) | 503 out of credits
    POST /profiles:batch      {"handles": [...]} -> {"results": [...]} (at most 100)

Run ``python examples/aiohttp_backend.py --serve`` to serve on 127.0.0.1:8080 (the fake
API unless DUMPLINGAI_API_KEY is set); without ``--serve`` it starts, answers a few
requests of its own and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web

from dumpling_async import (
    AsyncDumplingClient,
    AuthenticationError,
    DumplingError,
    InsufficientCreditsError,
    InvalidHandleError,
    ProfileNotFoundError,
    ProfileResult,
    RateLimitError,
)
from dumpling_async.testing import FakeDumplingServer

DUMPLING = web.AppKey("dumpling", AsyncDumplingClient)
MAX_BATCH = 100


def error_response(exc: DumplingError) -> web.Response:
    """Map a lookup error to what this backend's users should see."""
    if isinstance(exc, InvalidHandleError):
        return web.json_response({"error": str(exc)}, status=400)
    if isinstance(exc, ProfileNotFoundError):
        return web.json_response({"error": "no such TikTok account"}, status=404)
    if isinstance(exc, RateLimitError):
        headers = {"Retry-After": str(max(1, round(exc.retry_after or 1)))}
        return web.json_response({"error": "rate limited"}, status=429, headers=headers)
    if isinstance(exc, InsufficientCreditsError | AuthenticationError):
        return web.json_response({"error": "profile lookups unavailable"}, status=503)
    return web.json_response({"error": "upstream lookup failed"}, status=502)


def result_json(result: ProfileResult) -> dict[str, Any]:
    if result.profile is not None:
        return {"handle": result.handle, "ok": True, "profile": result.profile.raw}
    return {"handle": result.handle, "ok": False, "error": type(result.error).__name__}


async def get_profile(request: web.Request) -> web.Response:
    client = request.app[DUMPLING]
    try:
        profile = await client.get_tiktok_profile(request.match_info["handle"])
    except DumplingError as exc:
        return error_response(exc)
    return web.json_response(profile.raw)


async def batch(request: web.Request) -> web.Response:
    try:
        body = await request.json()
        handles = body["handles"]
        if not isinstance(handles, list) or len(handles) > MAX_BATCH:
            raise ValueError
    except (ValueError, KeyError, TypeError):
        return web.json_response(
            {"error": f'expected {{"handles": [...]}} with at most {MAX_BATCH} items'}, status=400
        )
    results = await request.app[DUMPLING].gather_profiles(handles)
    return web.json_response({"results": [result_json(r) for r in results]})


def make_app(**client_options: Any) -> web.Application:
    """The application; *client_options* go to AsyncDumplingClient."""

    async def dumpling_client(app: web.Application) -> AsyncIterator[None]:
        async with AsyncDumplingClient(**client_options) as client:
            app[DUMPLING] = client
            yield  # the app serves; on shutdown the client closes its pool

    app = web.Application()
    app.cleanup_ctx.append(dumpling_client)
    app.router.add_get("/profiles/{handle}", get_profile)
    app.router.add_post("/profiles:batch", batch)
    return app


async def main(serve: bool) -> int:
    async with contextlib.AsyncExitStack() as stack:
        options: dict[str, Any] = {}
        if not (os.environ.get("DUMPLINGAI_API_KEY") or os.environ.get("DUMPLING_API_KEY")):
            fake = await stack.enter_async_context(FakeDumplingServer())
            options = {"api_key": "offline-demo-key", "base_url": fake.url}
        runner = web.AppRunner(make_app(**options))
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, "127.0.0.1", 8080 if serve else 0)
        await site.start()
        port = runner.addresses[0][1]
        if serve:
            print(f"serving on http://127.0.0.1:{port}/profiles/{{handle}}")
            await asyncio.Event().wait()
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            for path in ("/profiles/stoolpresidente", "/profiles/unknown_zz", "/profiles/bad!"):
                async with http.get(path) as resp:
                    print(path, resp.status)
            async with http.post("/profiles:batch", json={"handles": ["a1", "@A1", "b2"]}) as r:
                print("/profiles:batch", r.status, [x["ok"] for x in (await r.json())["results"]])
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(asyncio.run(main("--serve" in sys.argv)))
