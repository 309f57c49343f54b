"""A profile backend for many worker processes on one API key, through Redis.

Every worker shares one quota (``RedisRateLimiter``), one credit budget when
``DUMPLING_MAX_CREDITS`` is set (``RedisCreditBudget``) and one profile cache with
single flight (``RedisCache``): a
handle that four workers are asked for at once is bought once, and a profile one worker
bought is every worker's for the cache's TTL. A request that the quota would hold longer
than ``MAX_WAIT`` seconds is answered 429 with ``Retry-After`` at once.

Serve it with real processes (the examples extra and the redis extra)::

    DUMPLINGAI_API_KEY=... DUMPLING_REDIS_URL=redis://127.0.0.1:6379/0 \\
        uvicorn fastapi_workers:app --factory --workers 4 --app-dir examples

``python examples/fastapi_workers.py`` instead runs it offline: a throwaway
redis-server, the fake API server, and ``uvicorn --workers 4`` on 127.0.0.1, asked the
same handle by 40 concurrent requests; it prints what the fake server charged.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
from fastapi import FastAPI
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
from dumpling_async.redis import RedisCache, RedisCreditBudget, RedisRateLimiter
from dumpling_async.testing import FakeDumplingServer

MAX_WAIT = 2.0  # seconds a request handler may wait for the quota


def error_response(exc: DumplingError) -> JSONResponse:
    """Map a lookup error to what this backend's users should see."""
    if isinstance(exc, InvalidHandleError):
        return JSONResponse({"error": str(exc)}, status_code=400)
    if isinstance(exc, ProfileNotFoundError):
        return JSONResponse({"error": "no such TikTok account"}, status_code=404)
    if isinstance(exc, RateLimitError):  # MaxWaitExceededError too: the predicted wait
        wait = exc.retry_after if exc.retry_after is not None else 1.0
        headers = {"Retry-After": str(max(1, math.ceil(wait)))}
        return JSONResponse({"error": "rate limited"}, status_code=429, headers=headers)
    if isinstance(exc, InsufficientCreditsError | AuthenticationError):
        return JSONResponse({"error": "profile lookups unavailable"}, status_code=503)
    return JSONResponse({"error": "upstream lookup failed"}, status_code=502)


def make_app(
    redis_url: str,
    *,
    shared_cache: bool = True,
    max_credits: int | None = None,
    **client_options: Any,
) -> FastAPI:
    """The application; *client_options* go to AsyncDumplingClient."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        key = client_options.pop("api_key", None) or os.environ.get("DUMPLINGAI_API_KEY", "")
        async with contextlib.AsyncExitStack() as stack:
            limiter = await stack.enter_async_context(RedisRateLimiter(redis_url, api_key=key))
            budget = None
            if max_credits is not None:  # one budget for every worker
                budget = RedisCreditBudget(redis_url, api_key=key, max_credits=max_credits)
                await stack.enter_async_context(budget)
            cache = RedisCache(redis_url, api_key=key, ttl=600) if shared_cache else None
            if cache is not None:
                await stack.enter_async_context(cache)
            app.state.dumpling = await stack.enter_async_context(
                AsyncDumplingClient(
                    key,
                    rate_limiter=limiter,
                    credit_budget=budget,
                    cache=cache,
                    max_wait=MAX_WAIT,
                    **client_options,
                )
            )
            yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/profiles/{handle}")
    async def get_profile(handle: str) -> Any:
        try:
            profile = await app.state.dumpling.get_tiktok_profile(handle)
        except DumplingError as exc:
            return error_response(exc)
        return JSONResponse(profile.raw)

    return app


def app() -> FastAPI:
    """The app uvicorn serves (``--factory``): configured from the environment."""
    base_url = os.environ.get("DUMPLINGAI_API_URL")
    options = {"base_url": base_url} if base_url else {}
    shared = os.environ.get("DUMPLING_SHARED_CACHE", "1") != "0"
    credits = os.environ.get("DUMPLING_MAX_CREDITS")
    return make_app(
        os.environ["DUMPLING_REDIS_URL"],
        shared_cache=shared,
        max_credits=int(credits) if credits else None,
        **options,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A throwaway redis-server on a free loopback port; its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed")
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", tmp]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        try:
            wait_for_port(port)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


@contextlib.contextmanager
def uvicorn_workers(env: dict[str, str], workers: int = 4) -> Iterator[str]:
    """``uvicorn fastapi_workers:app --factory --workers N``; its base URL."""
    port = free_port()
    here = os.path.dirname(os.path.abspath(__file__))
    command = [sys.executable, "-m", "uvicorn", "fastapi_workers:app", "--factory"]
    command += ["--app-dir", here]
    command += ["--workers", str(workers), "--host", "127.0.0.1", "--port", str(port)]
    command += ["--log-level", "warning"]
    proc = subprocess.Popen(command, env={**os.environ, **env})
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


async def main() -> int:
    async with FakeDumplingServer(latency=0.5) as api:
        with redis_server() as redis_url:
            env = {
                "DUMPLINGAI_API_KEY": "offline-demo-key",
                "DUMPLINGAI_API_URL": api.url,
                "DUMPLING_REDIS_URL": redis_url,
            }
            with uvicorn_workers(env) as url:
                async with aiohttp.ClientSession(url) as http:

                    async def ask(path: str) -> int:
                        async with http.get(path) as resp:
                            return resp.status

                    await asyncio.sleep(1.0)  # every worker has started its lifespan
                    statuses = await asyncio.gather(
                        *(ask("/profiles/stoolpresidente") for _ in range(40))
                    )
        print(f"40 requests over 4 workers: statuses {sorted(set(statuses))}")
        print(f"charged by the API: {dict(api.charged)}")  # once, whichever worker asked
    return 0 if api.charged == {"stoolpresidente": 1} and set(statuses) == {200} else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
