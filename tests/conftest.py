"""Shared fixtures: a real fake server on 127.0.0.1 and clients pointed at it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from dumpling_async import AsyncDumplingClient, RetryPolicy
from dumpling_async.testing import FakeDumplingServer

KEY = "sk-test-0123456789abcdef"
FAST_RETRY = RetryPolicy(backoff_base=0.005, backoff_max=0.02)


@pytest.fixture(autouse=True)
def _no_api_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never pick up a developer's real key or URL from the environment."""
    for name in ("DUMPLINGAI_API_KEY", "DUMPLING_API_KEY", "DUMPLINGAI_API_URL"):
        monkeypatch.delenv(name, raising=False)


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


async def settle_loop() -> None:
    """Let callbacks scheduled by closing transports run."""
    for _ in range(3):
        await asyncio.sleep(0)
