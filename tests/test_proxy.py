"""Proxies as companies run them, and the User-Agent every request carries."""

from __future__ import annotations

import asyncio
import os
import platform
import sys
from typing import Any

import aiohttp
import pytest
from _proxy import ForwardProxy
from conftest import FAST_RETRY, KEY

from dumpling_async import (
    AsyncDumplingClient,
    ConfigurationError,
    ProxyError,
    __version__,
)
from dumpling_async.testing import FakeDumplingServer

AGENT = (
    f"dumpling-async/{__version__} python/{platform.python_version()} aiohttp/{aiohttp.__version__}"
)


async def test_proxy_argument_carries_lookups_and_user_agent(server: FakeDumplingServer) -> None:
    """``proxy=`` sends every request through the proxy, with the library's User-Agent."""
    async with (
        ForwardProxy() as proxy,
        AsyncDumplingClient(KEY, base_url=server.url, proxy=proxy.url) as client,
    ):
        results = await client.gather_profiles(["alice", "bob", "carol"])
    assert [r.error for r in results] == [None, None, None]
    assert all(server.charged[h] == 1 for h in ("alice", "bob", "carol"))
    assert proxy.heads, "no request went through the proxy"
    line, headers = proxy.heads[0]
    assert line.startswith(f"POST {server.url}/api/v1/get-tiktok-profile ")
    assert headers["user-agent"] == AGENT
    assert server.user_agents == {AGENT: 3}


async def test_environment_proxy_is_honoured(
    server: FakeDumplingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``HTTP_PROXY`` routes requests through the proxy, as httpx does."""
    async with ForwardProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        async with AsyncDumplingClient(KEY, base_url=server.url) as client:
            await client.get_tiktok_profile("alice")
    assert len(proxy.heads) == 1
    assert server.charged["alice"] == 1


async def test_no_proxy_and_trust_env_bypass_the_proxy(
    server: FakeDumplingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``NO_PROXY`` naming the host, or ``trust_env=False``, sends requests direct."""
    async with ForwardProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        async with AsyncDumplingClient(KEY, base_url=server.url, trust_env=False) as client:
            await client.get_tiktok_profile("alice")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        async with AsyncDumplingClient(KEY, base_url=server.url) as client:
            await client.get_tiktok_profile("bob")
    assert proxy.heads == []
    assert server.requests == 2


async def test_user_agent_can_be_extended(server: FakeDumplingServer) -> None:
    """``user_agent=`` is appended to the library's own product tokens."""
    async with AsyncDumplingClient(KEY, base_url=server.url, user_agent="acme-crawler/2.1") as c:
        await c.get_tiktok_profile("alice")
    assert list(server.user_agents) == [f"{AGENT} acme-crawler/2.1"]


async def test_proxy_407_is_a_typed_error_and_costs_nothing(server: FakeDumplingServer) -> None:
    """A proxy that wants credentials answers 407: ProxyError, not retried, not charged."""
    async with ForwardProxy(credentials=("user", "pw")) as proxy:
        async with AsyncDumplingClient(
            KEY, base_url=server.url, proxy=proxy.url, retry=FAST_RETRY
        ) as client:
            with pytest.raises(ProxyError) as caught:
                await client.get_tiktok_profile("alice")
            assert client.credits_spent == 0 and client.credits_uncertain == 0
        assert caught.value.status == 407
        assert not caught.value.maybe_charged
        assert len(proxy.heads) == 1  # not retried
        assert KEY not in repr(caught.value) and "pw" not in str(caught.value)
        # With the credentials in the URL, the same proxy lets it through.
        authed = proxy.url.replace("http://", "http://user:pw@")
        async with AsyncDumplingClient(KEY, base_url=server.url, proxy=authed) as client:
            await client.get_tiktok_profile("alice")
    assert server.charged["alice"] == 1


async def test_proxy_refusing_a_tunnel_is_a_proxy_error() -> None:
    """An https API through a proxy that refuses ``CONNECT`` fails with ProxyError."""
    async with (
        ForwardProxy(credentials=("user", "pw")) as proxy,
        AsyncDumplingClient(
            KEY, base_url="https://127.0.0.1:9", proxy=proxy.url, retry=FAST_RETRY
        ) as client,
    ):
        with pytest.raises(ProxyError) as caught:
            await client.get_tiktok_profile("alice")
        assert client.credits_uncertain == 0
    assert caught.value.status == 407
    assert proxy.heads[0][0].startswith("CONNECT 127.0.0.1:9 ")


async def test_proxy_that_cannot_reach_the_api_is_retried_then_typed(
    unused_tcp_port: int,
) -> None:
    """A proxy's own 502 on a tunnel it could not open is a retried ProxyError."""
    async with (
        ForwardProxy() as proxy,
        AsyncDumplingClient(
            KEY, base_url=f"https://127.0.0.1:{unused_tcp_port}", proxy=proxy.url, retry=FAST_RETRY
        ) as client,
    ):
        with pytest.raises(ProxyError) as caught:
            await client.get_tiktok_profile("alice")
        assert client.credits_uncertain == 0
    assert caught.value.status == 502
    assert len(proxy.heads) == FAST_RETRY.max_attempts


@pytest.mark.parametrize(
    "proxy_url",
    ["ftp://proxy.example", "not a url", "http://"],
)
def test_bad_proxy_is_refused_without_echoing_it(proxy_url: str) -> None:
    """A proxy that is not an http(s) URL is a ConfigurationError that does not repeat it."""
    with pytest.raises(ConfigurationError) as caught:
        AsyncDumplingClient(KEY, base_url="https://api.example", proxy=proxy_url)
    assert proxy_url not in str(caught.value)


def test_key_never_goes_in_clear_to_a_remote_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain-http API through another machine's proxy would show it the key: refused."""
    with pytest.raises(ConfigurationError, match="in clear"):
        AsyncDumplingClient(
            KEY, base_url="http://127.0.0.1:8000", proxy="http://proxy.corp.example:3128"
        )
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.corp.example:3128")
    with pytest.raises(ConfigurationError, match="in clear"):
        AsyncDumplingClient(KEY, base_url="http://127.0.0.1:8000")
    # Tunnelled (https), or explicitly allowed, it is the user's call.
    AsyncDumplingClient(KEY, base_url="https://api.example", proxy="http://proxy.corp.example")
    AsyncDumplingClient(KEY, base_url="http://127.0.0.1:8000", allow_insecure_http=True)


async def _cli(*args: str, **env: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dumpling_async",
        *args,
        env={**os.environ, "DUMPLINGAI_API_KEY": KEY, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, (out + err).decode()


async def test_command_line_follows_proxy_option_and_environment(
    server: FakeDumplingServer,
) -> None:
    """The command line takes ``--proxy``, follows ``HTTP_PROXY``, and ``--simulate``
    never goes through a proxy."""
    async with ForwardProxy() as proxy:
        code, output = await _cli(
            "profile", "alice", "--base-url", server.url, "--proxy", proxy.url
        )
        assert code == 0, output
        assert len(proxy.heads) == 1
        code, output = await _cli("profile", "bob", "--base-url", server.url, HTTP_PROXY=proxy.url)
        assert code == 0, output
        assert len(proxy.heads) == 2
        code, output = await _cli("profile", "carol", "--simulate", HTTP_PROXY=proxy.url)
        assert code == 0, output
        assert len(proxy.heads) == 2
    assert server.charged == {"alice": 1, "bob": 1}


async def test_lookups_do_no_work_in_threads(
    server: FakeDumplingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The proxy is read from the environment once: a lookup never hops to a thread (as
    aiohttp's trust_env would, twice per request, tripling the CPU per lookup)."""
    calls: list[object] = []
    loop = asyncio.get_running_loop()
    original = loop.run_in_executor

    def counting(executor: Any, func: Any, *args: Any) -> Any:
        calls.append(func)
        return original(executor, func, *args)

    async with ForwardProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        async with AsyncDumplingClient(KEY, base_url=server.url) as client:
            await client.get_tiktok_profile("warmup")  # DNS and connection set-up
            monkeypatch.setattr(loop, "run_in_executor", counting)
            await client.gather_profiles([f"user{i}" for i in range(20)])
    assert calls == []
    assert len(proxy.heads) >= 1
