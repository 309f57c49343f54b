"""The aiohttp transport: how far an attempt got and the one neutral failure it raises,
over real sockets on 127.0.0.1 and from aiohttp's own exceptions."""

from __future__ import annotations

import asyncio
import socket
import time

import aiohttp
import pytest
from yarl import URL

from dumpling_async._core.aiohttp_transport import AiohttpTransport, _failed
from dumpling_async._core.secret import Secret
from dumpling_async._core.transport import Failure, Progress, SendFailed
from dumpling_async.testing import FakeDumplingServer

SECRET = "sk-transport-test-key"


def _transport(*, timeout: float = 5.0, max_body: int = 1 << 20) -> AiohttpTransport:
    return AiohttpTransport(
        Secret(SECRET), session=None, max_connections=4, timeout=timeout, max_body=max_body
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens on it once the socket is closed


async def _post(transport: AiohttpTransport, url: URL) -> tuple[SendFailed, Progress]:
    progress = Progress()
    with pytest.raises(SendFailed) as caught:
        await transport.post(url, b'{"handle": "alice"}', progress)
    return caught.value, progress


async def test_a_refused_connection_never_went_out() -> None:
    """Nothing listening: a CONNECTION failure that never went out, no status."""
    transport = _transport()
    try:
        failure, progress = await _post(transport, URL(f"http://127.0.0.1:{_free_port()}/x"))
    finally:
        await transport.aclose()
    assert failure.kind is Failure.CONNECTION and not failure.went_out
    assert failure.status is None and not progress.went_out
    assert isinstance(failure.cause, aiohttp.ClientConnectorError)


async def test_a_connection_closed_after_the_request_went_out_may_have_been_charged() -> None:
    """A server that reads the request and hangs up: went out, no status."""

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = _transport()
    try:
        failure, progress = await _post(transport, URL(f"http://127.0.0.1:{port}/x"))
    finally:
        await transport.aclose()
        server.close()
        await server.wait_closed()
    assert failure.kind is Failure.CONNECTION and failure.went_out and failure.status is None
    assert progress.went_out and progress.status is None


async def test_no_answer_in_time_is_a_timeout_that_went_out() -> None:
    """A server that never answers: TIMEOUT, went out; the cause carries no frames."""

    done = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await done.wait()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = _transport(timeout=0.2)
    try:
        failure, progress = await _post(transport, URL(f"http://127.0.0.1:{port}/x"))
    finally:
        await transport.aclose()
        done.set()
        server.close()
        await server.wait_closed()
    assert failure.kind is Failure.TIMEOUT and failure.went_out and progress.went_out
    assert failure.cause is not None and failure.cause.__traceback__ is None


async def test_an_oversized_200_says_its_status_came(server: FakeDumplingServer) -> None:
    """A 200 body past the cap: TOO_LARGE with the 200 that arrived (it was charged)."""
    transport = _transport(max_body=64)
    url = URL(server.url).with_path("/api/v1/get-tiktok-profile")
    try:
        failure, progress = await _post(transport, url)
    finally:
        await transport.aclose()
    assert failure.kind is Failure.TOO_LARGE and failure.status == 200 == progress.status
    assert "64 byte cap" in str(failure)


async def test_the_listener_hears_a_request_leave_once_and_only_when_it_does(
    server: FakeDumplingServer,
) -> None:
    """``on_leave`` is told once, when the request holds a connection; never for a
    request refused a connection."""
    transport = _transport()
    heard: list[float] = []
    sent, refused = Progress(), Progress()
    for progress in (sent, refused):
        progress.on_leave = lambda: heard.append(time.monotonic())
    try:
        await transport.post(
            URL(server.url).with_path("/api/v1/get-tiktok-profile"), b'{"handle": "a"}', sent
        )
        assert len(heard) == 1 and heard[0] == pytest.approx(sent.left_at, abs=0.05)
        with pytest.raises(SendFailed):
            await transport.post(URL(f"http://127.0.0.1:{_free_port()}/x"), b"{}", refused)
    finally:
        await transport.aclose()
    assert len(heard) == 1 and not refused.went_out


def test_aiohttp_failures_map_to_kinds_and_how_far_they_got() -> None:
    """A connect timeout and a proxy's refusal never reached the API, even after the
    connector held a connection (to the proxy); a cut body keeps the status that came."""
    sent = Progress()
    sent.went_out = True
    connect = _failed(aiohttp.ConnectionTimeoutError(), sent)
    assert connect.kind is Failure.TIMEOUT and not connect.went_out and not sent.went_out
    sent.went_out = True
    info = aiohttp.RequestInfo(URL("http://p.test"), "CONNECT", {}, URL("http://p.test"))  # type: ignore[arg-type]
    proxy = _failed(aiohttp.ClientHttpProxyError(info, (), status=407), sent)
    assert proxy.kind is Failure.PROXY and proxy.status == 407 and not proxy.went_out
    cut = Progress()
    cut.went_out, cut.status = True, 200
    payload = _failed(aiohttp.ClientPayloadError("cut"), cut)
    assert payload.kind is Failure.CONNECTION and payload.went_out and payload.status == 200
    dropped = Progress()
    dropped.went_out = True
    gone = _failed(aiohttp.ServerDisconnectedError(), dropped)
    assert gone.kind is Failure.CONNECTION and gone.went_out and gone.status is None


def test_the_cause_loses_its_frames_and_the_request_headers() -> None:
    """The cause keeps its message but loses its frames and aiohttp's request headers."""
    request = aiohttp.RequestInfo(
        URL("https://x.test"),
        "POST",
        {"Authorization": f"Bearer {SECRET}"},  # type: ignore[arg-type]
        URL("https://x.test"),
    )
    try:
        raise aiohttp.ClientResponseError(request, ())
    except aiohttp.ClientResponseError as exc:
        failure = _failed(exc, Progress())
    cause = failure.cause
    assert cause is not None and cause.__traceback__ is None
    assert SECRET not in repr(cause.request_info)  # type: ignore[attr-defined]


async def test_no_exception_behind_a_failure_keeps_its_frames() -> None:
    """A refused connection's cause, and every exception chained behind it, carries no
    frames (aiohttp's own hold the request and its Authorization header)."""
    transport = _transport()
    try:
        failure, _ = await _post(transport, URL(f"http://127.0.0.1:{_free_port()}/x"))
    finally:
        await transport.aclose()
    chain: list[BaseException] = []
    todo: list[BaseException | None] = [failure.cause]
    while todo:
        link = todo.pop()
        if link is None or any(link is seen for seen in chain):
            continue
        chain.append(link)
        todo += (link.__cause__, link.__context__)
    assert len(chain) >= 2  # aiohttp chains the OSError behind its own error
    assert all(link.__traceback__ is None for link in chain), chain
    assert not any(SECRET in repr(link) for link in chain)
