"""Hostile input, secrets and transport security."""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import AsyncIterator

import pytest

from dumpling_async import (
    APIStatusError,
    AsyncDumplingClient,
    DumplingError,
    InvalidHandleError,
    RetryPolicy,
)
from dumpling_async.testing import (
    FAULT_KINDS,
    SCRIPTED_ONLY,
    FakeDumplingServer,
    RateLimitRule,
)

SECRET = "sk-live-RECOGNISABLE-7f3a9c1e5b"

HOSTILE: list[object] = [
    None,
    42,
    3.5,
    b"bytes",
    ["list"],
    {"handle": "x"},
    "x" * 100_000,
    "name\r\nAuthorization: Bearer stolen",
    "na\u202eme",
    "\u0000\u0001\u0002",
    "名前",
    "https://evil.example.com/@name",
    "https://tiktok.com.evil.example/@name",
    "javascript:alert(document.cookie)",
    "file:///etc/passwd",
    "../../../etc/passwd",
    "name/../../admin",
    "name?handle=other",
    'name", "requestSource": "WEB',
    "name#fragment",
]


@pytest.mark.parametrize("value", HOSTILE, ids=lambda v: repr(v)[:30])
async def test_hostile_input_is_refused_before_any_request(
    client: AsyncDumplingClient, server: FakeDumplingServer, value: object
) -> None:
    """Hostile input raises InvalidHandleError and never reaches the server."""
    with pytest.raises(InvalidHandleError):
        await client.get_tiktok_profile(value)  # type: ignore[arg-type]
    assert server.records == []


async def test_hostile_input_in_bulk(
    client: AsyncDumplingClient, server: FakeDumplingServer
) -> None:
    """In a bulk job, hostile items become InvalidHandleError results without requests."""
    results = await client.gather_profiles(HOSTILE)
    assert all(isinstance(r.error, InvalidHandleError) for r in results)
    assert server.records == []


async def test_request_body_is_json_encoded(client: AsyncDumplingClient) -> None:
    """The request body is built by a JSON encoder from the normalised handle."""
    import orjson

    assert orjson.loads(client._pipeline.body({"handle": "a.b_c"})) == {"handle": "a.b_c"}


async def _drain(pager: AsyncIterator[object]) -> None:
    async for _ in pager:
        pass


def _check(error: BaseException) -> None:
    """The error, its cause and its traceback with every frame's locals omit the key.

    Checked at once rather than collected: a collected text would show up in the next
    traceback's locals and grow the texts without bound.
    """
    tb = traceback.TracebackException.from_exception(error, capture_locals=True)
    cause = error.__cause__
    texts = [str(error), repr(error), "".join(tb.format()), repr(vars(error))]
    if cause is not None:
        texts += [repr(cause), str(cause), repr(vars(cause)) if hasattr(cause, "__dict__") else ""]
    assert not [t for t in texts if SECRET in t or "Bearer" in t]


async def test_secret_never_leaks_on_any_path(capfd: pytest.CaptureFixture[str]) -> None:
    """Success, every error and fault, every endpoint, retries, timeouts, bulk and
    cancellation never show the key."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(level=logging.DEBUG)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("dumpling_async")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    texts: list[str] = []
    try:
        async with FakeDumplingServer(rate_limit=RateLimitRule(500, 1.0)) as server:
            async with AsyncDumplingClient(
                SECRET,
                base_url=server.url,
                timeout=0.2,
                retry=RetryPolicy(max_attempts=2, backoff_base=0.001),
            ) as client:
                texts += [repr(client), str(client)]
                await client.get_tiktok_profile("someone")
                for fault in (*FAULT_KINDS, *SCRIPTED_ONLY):
                    server.inject(fault, fault, handle="victim")
                    try:
                        await client.get_tiktok_profile("victim")
                    except DumplingError as exc:
                        _check(exc)
                for bad in ("unknown_x", "not valid!"):
                    try:
                        await client.get_tiktok_profile(bad)
                    except DumplingError as exc:
                        _check(exc)
                results = await client.gather_profiles([f"u{i}" for i in range(30)] + ["bad!"])
                texts += [repr(r) for r in results]
                for r in results:
                    if r.error is not None:
                        _check(r.error)
                # The other endpoints: a failing video, a transcript 404, a failed page.
                video = "https://www.tiktok.com/@creator/video/7300000000000000123"
                server.inject("500", "500", handle=video)
                server.inject("drop", "drop", handle="victim2")
                for call in (
                    lambda: client.get_tiktok_video(video),
                    lambda: client.get_tiktok_transcript(video, preferred_language="xx"),
                    lambda: client.get_tiktok_video(
                        "https://www.tiktok.com/@unknown_a/video/12345"
                    ),
                    lambda: _drain(client.iter_followers("victim2")),
                    lambda: _drain(client.search_users("\u202e\x00")),
                ):
                    try:
                        await call()
                    except DumplingError as exc:
                        _check(exc)
                transcripts = await client.gather_transcripts([video, "bad"])
                for r in transcripts:
                    if r.error is not None:
                        _check(r.error)
                server.latency = 0.5
                job = asyncio.ensure_future(client.gather_profiles(["slow1", "slow2"]))
                await asyncio.sleep(0.05)
                job.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await job
                server.latency = 0.0
            async with AsyncDumplingClient("wrong-" + SECRET, base_url=server.url) as other:
                server.api_keys = frozenset({"nobody"})
                results = await other.gather_profiles(["a1", "a2"])
                for r in results:
                    if r.error is not None:
                        _check(r.error)
        async with (
            FakeDumplingServer(credits=0) as broke,
            AsyncDumplingClient(SECRET, base_url=broke.url) as poor,
        ):
            results = await poor.gather_profiles(["a1", "a2"])
            for r in results:
                if r.error is not None:
                    _check(r.error)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
    formatter = logging.Formatter("%(message)s %(levelname)s")
    texts += [formatter.format(r) + repr(vars(r)) for r in records]
    out, err = capfd.readouterr()
    texts += [out, err]
    assert len(records) > 50
    leaks = [t for t in texts if SECRET in t]
    assert leaks == []
    assert not any("Bearer" in t for t in texts)


async def test_redirects_never_forward_credentials() -> None:
    """A redirect to another host is not followed, so the key never reaches it."""
    async with (
        FakeDumplingServer() as elsewhere,
        FakeDumplingServer(redirect_to=elsewhere.url) as server,
        AsyncDumplingClient(SECRET, base_url=server.url) as client,
    ):
        with pytest.raises(APIStatusError) as info:
            await client.get_tiktok_profile("someone")
    assert info.value.status == 307
    assert len(server.records) == 1
    assert elsewhere.records == []


def test_tls_verification_has_no_off_switch() -> None:
    """The client has no option that disables certificate checks."""
    import inspect

    params = inspect.signature(AsyncDumplingClient).parameters
    assert not {"ssl", "verify", "verify_ssl", "insecure"} & set(params)
