"""Shared fixtures: a real fake server on 127.0.0.1 and clients pointed at it, and a
real redis-server."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from _redis import RedisProcess

from dumpling_async import AsyncDumplingClient, RetryPolicy
from dumpling_async.testing import FakeDumplingServer

KEY = "sk-test-0123456789abcdef"
FAST_RETRY = RetryPolicy(backoff_base=0.005, backoff_max=0.02)


@pytest.fixture(autouse=True)
def _no_api_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never pick up a developer's real key, URL or proxy from the environment."""
    for name in ("DUMPLINGAI_API_KEY", "DUMPLING_API_KEY", "DUMPLINGAI_API_URL"):
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
async def server() -> AsyncIterator[FakeDumplingServer]:
    async with FakeDumplingServer() as srv:
        yield srv


@pytest.fixture
async def make_client(
    server: FakeDumplingServer,
) -> AsyncIterator[Callable[..., AsyncDumplingClient]]:
    clients: list[AsyncDumplingClient] = []

    def factory(**kwargs: Any) -> AsyncDumplingClient:
        kwargs.setdefault("base_url", server.url)
        kwargs.setdefault("retry", FAST_RETRY)
        client = AsyncDumplingClient(kwargs.pop("api_key", KEY), **kwargs)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.aclose()


@pytest.fixture
async def client(make_client: Callable[..., AsyncDumplingClient]) -> AsyncDumplingClient:
    return make_client()


class ServerThread:
    """A FakeDumplingServer running on its own event loop in a daemon thread."""

    def __init__(self, **options: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server = FakeDumplingServer(**options)

    def start(self) -> FakeDumplingServer:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)
        return self.server

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., FakeDumplingServer]]:
    """Start fake servers in background threads; stop them after the test."""
    threads: list[ServerThread] = []

    def start(**options: Any) -> FakeDumplingServer:
        thread = ServerThread(**options)
        threads.append(thread)
        return thread.start()

    yield start
    for thread in threads:
        thread.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisProcess]:
    """A real redis-server on a free loopback port, stopped after the test."""
    server = RedisProcess(tmp_path)
    yield server
    server.stop()


@pytest.fixture
async def redis_client(redis_server: RedisProcess) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()
