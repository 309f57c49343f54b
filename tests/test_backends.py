"""The web-backend examples, started for real and hit with many concurrent requests."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from conftest import KEY

from dumpling_async import AdaptiveRateLimiter
from dumpling_async.testing import FakeDumplingServer, RateLimitRule, fake_profile

EXAMPLES = Path(__file__).parent.parent / "examples"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# 110 simultaneous requests (under the listen backlog of 128), 20 handles 5 times each.
HANDLES = [f"fan{i % 20}" for i in range(100)] + ["unknown_a", "bad handle!"] * 5


async def _hammer(base: str) -> list[tuple[str, int, Any]]:
    # No connection limit: every request is in flight at once, so repeats must coalesce.
    async with aiohttp.ClientSession(base, connector=aiohttp.TCPConnector(limit=0)) as http:

        async def one(handle: str) -> tuple[str, int, Any]:
            async with http.get(f"/profiles/{handle}") as resp:
                return handle, resp.status, await resp.json()

        return await asyncio.gather(*(one(h) for h in HANDLES))


def _check(answers: list[tuple[str, int, Any]], server: FakeDumplingServer) -> None:
    for handle, status, body in answers:
        if handle.startswith("unknown"):
            assert status == 404
        elif " " in handle:
            assert status == 400
        else:
            assert status == 200 and body == fake_profile(handle)
    # Concurrent requests for one handle were coalesced: one upstream lookup each.
    assert max(len(server.requests_for(f"fan{i}")) for i in range(20)) == 1
    assert {h for h in server.charged if h.startswith("fan")} == {f"fan{i}" for i in range(20)}
    assert server.rate_limited == 0


async def test_aiohttp_backend_under_concurrency() -> None:
    """A hundred simultaneous requests: right answers, single flight, quota respected."""
    module = _load("aiohttp_backend")
    async with FakeDumplingServer(rate_limit=RateLimitRule(30, 0.5), latency=0.5) as server:
        app = module.make_app(
            api_key=KEY, base_url=server.url, rate_limiter=AdaptiveRateLimiter(window=0.5)
        )
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            runner = web.AppRunner(app)
            await runner.setup()
            try:
                # A deep listen backlog, so that no connection waits for a SYN retry.
                site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
                await site.start()
                base = f"http://127.0.0.1:{runner.addresses[0][1]}"
                answers = await _hammer(base)
                async with aiohttp.ClientSession(base) as http:
                    payload = {"handles": ["batch1", "@BATCH1", "x"]}
                    async with http.post("/profiles:batch", json=payload) as r:
                        batch = await r.json()
                client = app[module.DUMPLING]
            finally:
                await runner.cleanup()
            assert client.closed  # shutting the app down closed the client
    _check(answers, server)
    assert [x["ok"] for x in batch["results"]] == [True, True, False]


async def test_fastapi_backend_under_concurrency() -> None:
    """The FastAPI variant behaves the same and closes its client on shutdown."""
    pytest.importorskip("fastapi")
    module = _load("fastapi_backend")
    async with FakeDumplingServer(rate_limit=RateLimitRule(30, 0.5), latency=0.5) as server:
        app = module.make_app(
            api_key=KEY, base_url=server.url, rate_limiter=AdaptiveRateLimiter(window=0.5)
        )
        web, task = await module.serve(app, 0)
        port = web.servers[0].sockets[0].getsockname()[1]
        answers = await _hammer(f"http://127.0.0.1:{port}")
        client = app.state.dumpling
        web.should_exit = True
        await task
        assert client.closed
    _check(answers, server)
