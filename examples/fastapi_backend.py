"""The same profile backend with FastAPI: the client lives in the app's lifespan.

Needs the ``examples`` extra (``pip install 'dumpling-async[examples]'``). Run
``python examples/fastapi_backend.py --serve`` to serve on 127.0.0.1:8000; without
``--serve`` it starts, answers a few requests of its own and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from dumpling_async import (
    AsyncDumplingClient,
    AuthenticationError,
    DumplingError,
    InsufficientCreditsError,
    InvalidHandleError,
    ProfileNotFoundError,
    RateLimitError,
)
from dumpling_async.testing import FakeDumplingServer

MAX_BATCH = 100


def error_response(exc: DumplingError) -> JSONResponse:
    """Map a lookup error to what this backend's users should see."""
    if isinstance(exc, InvalidHandleError):
        return JSONResponse({"error": str(exc)}, status_code=400)
    if isinstance(exc, ProfileNotFoundError):
        return JSONResponse({"error": "no such TikTok account"}, status_code=404)
    if isinstance(exc, RateLimitError):
        headers = {"Retry-After": str(max(1, round(exc.retry_after or 1)))}
        return JSONResponse({"error": "rate limited"}, status_code=429, headers=headers)
    if isinstance(exc, InsufficientCreditsError | AuthenticationError):
        return JSONResponse({"error": "profile lookups unavailable"}, status_code=503)
    return JSONResponse({"error": "upstream lookup failed"}, status_code=502)


def make_app(**client_options: Any) -> FastAPI:
    """The application; *client_options* go to AsyncDumplingClient."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncDumplingClient(**client_options) as client:
            app.state.dumpling = client
            yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/profiles/{handle}")
    async def get_profile(handle: str, request: Request) -> Any:
        try:
            profile = await request.app.state.dumpling.get_tiktok_profile(handle)
        except DumplingError as exc:
            return error_response(exc)
        return JSONResponse(profile.raw)

    @app.post("/profiles:batch")
    async def batch(request: Request) -> Any:
        body = await request.json()
        handles = body.get("handles") if isinstance(body, dict) else None
        if not isinstance(handles, list) or len(handles) > MAX_BATCH:
            return JSONResponse({"error": "expected up to 100 handles"}, status_code=400)
        results = await request.app.state.dumpling.gather_profiles(handles)
        return {
            "results": [
                {"handle": r.handle, "ok": True, "profile": r.profile.raw}
                if r.profile is not None
                else {"handle": r.handle, "ok": False, "error": type(r.error).__name__}
                for r in results
            ]
        }

    return app


async def serve(app: FastAPI, port: int) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    """Start uvicorn in this loop; return the server once it listens."""
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    return server, task


async def main(forever: bool) -> int:
    async with contextlib.AsyncExitStack() as stack:
        options: dict[str, Any] = {}
        if not (os.environ.get("DUMPLINGAI_API_KEY") or os.environ.get("DUMPLING_API_KEY")):
            fake = await stack.enter_async_context(FakeDumplingServer())
            options = {"api_key": "offline-demo-key", "base_url": fake.url}
        server, task = await serve(make_app(**options), 8000 if forever else 0)
        port = server.servers[0].sockets[0].getsockname()[1]
        if forever:
            print(f"serving on http://127.0.0.1:{port}/profiles/{{handle}}")
            await task
            return 0
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            for path in ("/profiles/stoolpresidente", "/profiles/unknown_zz", "/profiles/bad!"):
                async with http.get(path) as resp:
                    print(path, resp.status)
        server.should_exit = True
        await task
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(asyncio.run(main("--serve" in sys.argv)))
