"""Event hooks: every event the client reports, and a hook that fails."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from conftest import FAST_RETRY, KEY

from dumpling_async import (
    APIConnectionError,
    AsyncDumplingClient,
    ClientHooks,
    ConfigurationError,
    CreditsEvent,
    PauseEvent,
    RequestEvent,
    ResponseEvent,
    RetryEvent,
    ServerError,
    ThrottleEvent,
)
from dumpling_async.testing import FakeDumplingServer, RateLimitRule

HOOKS = ("on_request", "on_response", "on_retry", "on_throttle", "on_pause", "on_credits")


class Recorder(ClientHooks):
    """Keeps every event, with the name of the hook it came to."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        for name in HOOKS:
            setattr(self, name, lambda event, name=name: self.events.append((name, event)))

    def of(self, kind: type) -> list[Any]:
        return [event for _, event in self.events if isinstance(event, kind)]


async def test_a_retried_lookup_reports_each_step_in_order(server: FakeDumplingServer) -> None:
    """A 500 then a 200: request, response, retry, request, response, credits."""
    server.inject("500", handle="alice")
    hooks = Recorder()
    async with AsyncDumplingClient(
        KEY, base_url=server.url, retry=FAST_RETRY, hooks=hooks
    ) as client:
        await client.get_tiktok_profile("alice")
    names = [name for name, _ in hooks.events]
    assert names == [
        "on_request",
        "on_response",
        "on_retry",
        "on_request",
        "on_response",
        "on_credits",
    ]
    first, second = hooks.of(ResponseEvent)
    assert (first.status, first.attempt, type(first.error)) == (500, 1, ServerError)
    assert (second.status, second.attempt, second.error) == (200, 2, None)
    assert second.endpoint == "get-tiktok-profile" and second.target == "alice"
    assert second.limit is None  # this server sends no rate-limit headers
    assert 0 < second.elapsed < 5
    (retry,) = hooks.of(RetryEvent)
    assert retry.attempt == 1 and retry.delay >= 0 and isinstance(retry.error, ServerError)
    assert hooks.of(CreditsEvent) == [
        CreditsEvent(endpoint="get-tiktok-profile", target="alice", credits=10, confirmed=True)
    ]


async def test_a_429_reports_a_pause(server: FakeDumplingServer) -> None:
    """A 429 is an on_pause with the server's Retry-After, then the retry succeeds."""
    server.inject("429", handle="alice")
    hooks = Recorder()
    async with AsyncDumplingClient(
        KEY, base_url=server.url, retry=FAST_RETRY, hooks=hooks
    ) as client:
        await client.get_tiktok_profile("alice")
    (pause,) = hooks.of(PauseEvent)
    assert pause.status == 429 and pause.seconds is not None and pause.seconds > 0
    assert [e.status for e in hooks.of(ResponseEvent)] == [429, 200]


async def test_an_unanswered_request_reports_maybe_charged_credits() -> None:
    """A connection dropped after the request went: credits maybe charged, no status."""
    async with FakeDumplingServer() as server:
        server.inject("drop", handle="alice")
        hooks = Recorder()
        async with AsyncDumplingClient(
            KEY, base_url=server.url, retry=FAST_RETRY, hooks=hooks
        ) as client:
            with pytest.raises(APIConnectionError):
                await client.get_tiktok_profile("alice")
            assert client.credits_uncertain == 10
    (response,) = hooks.of(ResponseEvent)
    assert response.status == 0 and isinstance(response.error, APIConnectionError)
    assert hooks.of(CreditsEvent) == [
        CreditsEvent(endpoint="get-tiktok-profile", target="alice", credits=10, confirmed=False)
    ]


async def test_limiter_waits_are_reported_as_throttles() -> None:
    """Requests held back by the rate limiter report how long they waited."""
    async with FakeDumplingServer(rate_limit=RateLimitRule(2, 0.2, "fixed")) as server:
        hooks = Recorder()
        async with AsyncDumplingClient(
            KEY, base_url=server.url, retry=FAST_RETRY, hooks=hooks, max_concurrency=1
        ) as client:
            results = await client.gather_profiles([f"user{i}" for i in range(6)])
    assert all(r.error is None for r in results)
    throttles = hooks.of(ThrottleEvent)
    assert throttles, "no wait was reported"
    assert all(t.seconds > 0 and t.endpoint == "get-tiktok-profile" for t in throttles)
    # Six requests at two per 0.2 s: at least two windows were waited out, held back by
    # the limiter or, after the one probe it may send to learn the window, as a retry.
    retried = sum(r.delay for r in hooks.of(RetryEvent))
    assert sum(t.seconds for t in throttles) + retried >= 0.3
    limits = {(e.limit, e.remaining) for e in hooks.of(ResponseEvent)}
    assert (2, 1) in limits and (2, 0) in limits  # the rate-limit state of each answer


async def test_a_failing_hook_is_logged_and_never_breaks_a_lookup(
    server: FakeDumplingServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A hook that raises is logged as hook_failed; the lookup still returns its profile."""

    class Broken(ClientHooks):
        def on_response(self, event: ResponseEvent) -> None:
            raise RuntimeError("metrics backend down")

        def on_credits(self, event: CreditsEvent) -> None:
            raise ValueError("bad label")

    with caplog.at_level(logging.WARNING, logger="dumpling_async"):
        async with AsyncDumplingClient(KEY, base_url=server.url, hooks=Broken()) as client:
            profile = await client.get_tiktok_profile("alice")
    assert profile.user.unique_id == "alice"
    failures = {
        (record.hook, record.error)  # type: ignore[attr-defined]
        for record in caplog.records
        if record.getMessage() == "hook_failed"
    }
    assert failures == {
        ("on_response", "RuntimeError: metrics backend down"),
        ("on_credits", "ValueError: bad label"),
    }
    assert server.charged["alice"] == 1  # charged once, not retried because a hook failed


def test_hooks_must_be_a_client_hooks() -> None:
    """A plain object or function is refused at construction, before any request."""
    with pytest.raises(ConfigurationError, match="ClientHooks"):
        AsyncDumplingClient(KEY, base_url="https://api.example", hooks=object())  # type: ignore[arg-type]


def test_events_are_frozen() -> None:
    """Events are immutable values a hook may keep."""
    event = RequestEvent(endpoint="get-tiktok-profile", target="alice", attempt=1)
    with pytest.raises(AttributeError):
        event.attempt = 2  # type: ignore[misc]
