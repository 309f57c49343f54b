"""Credits are money: every way a charge could go uncounted, be paid twice, or a paid
result be lost, each against a server that behaves as real ones do."""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import psutil
import pytest
from _redis import RedisProcess
from aiohttp import web
from aiohttp.test_utils import TestServer
from conftest import FAST_RETRY, KEY

from dumpling_async import (
    APITimeoutError,
    AsyncDumplingClient,
    BudgetExceededError,
    InputFailedError,
    InvalidResponseError,
    ProfileResult,
)
from dumpling_async.redis import RedisCreditBudget
from dumpling_async.testing import FakeDumplingServer, fake_profile


async def _serve(handler: Any, path: str = "/api/v1/get-tiktok-profile") -> TestServer:
    app = web.Application()
    app.router.add_post(path, handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


def _url(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


class _SlowReplies:
    """A TCP relay to 127.0.0.1:*port* that forwards requests at once and every reply
    *delay* seconds late."""

    def __init__(self, port: int, *, delay: float) -> None:
        self._port, self._delay = port, delay
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"redis://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/0"

    async def __aenter__(self) -> _SlowReplies:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in self._writers:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        await self._server.wait_closed()

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        redis_r, redis_w = await asyncio.open_connection("127.0.0.1", self._port)
        self._writers += [client_w, redis_w]

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter, delay: float) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await r.read(65536):
                    await asyncio.sleep(delay)
                    w.write(data)
                    await w.drain()
            w.close()

        for r, w, delay in ((client_r, redis_w, 0.0), (redis_r, client_w, self._delay)):
            task = asyncio.ensure_future(pipe(r, w, delay))
            self._tasks.add(task)


# 1 -------------------------------------------------------------------------------------
async def test_a_request_the_client_gave_up_on_is_counted_and_not_paid_again() -> None:
    """Answers slower than the timeout: each is maybe charged, sent once, within budget."""
    async with FakeDumplingServer(latency=0.6, charge_abandoned=True) as server:
        async with AsyncDumplingClient(
            KEY, base_url=server.url, timeout=0.5, max_credits=50, retry=FAST_RETRY
        ) as client:
            results = await client.gather_profiles([f"slow{i}" for i in range(5)])
        async with asyncio.timeout(5):
            await server.idle()
    for result in results:
        assert isinstance(result.error, APITimeoutError) and result.error.maybe_charged
    assert server.requests == 5 and server.abandoned == 5
    assert server.credits_charged == 50  # every abandoned request was finished and charged
    assert (client.credits_spent, client.credits_uncertain) == (0, 50)


# 2 -------------------------------------------------------------------------------------
async def test_a_redis_restart_does_not_hand_the_budget_out_again(
    redis_server: RedisProcess,
) -> None:
    """After Redis loses what was spent, the budget fails closed and sets it back."""
    async with RedisCreditBudget(redis_server.url, api_key=KEY, max_credits=100) as budget:
        for _ in range(10):
            await budget.reserve(10)
            await budget.settle(10, charged=True)
        assert budget.spent == 100
        redis_server.restart()
        with pytest.raises(BudgetExceededError, match="went back from 100 to 0"):
            await budget.reserve(10)
        async with RedisCreditBudget(redis_server.url, api_key=KEY, max_credits=100) as fresh:
            # Another worker that never saw the 100 finds them restored.
            with pytest.raises(BudgetExceededError, match="100 of 100"):
                await fresh.reserve(10)


async def test_reservations_in_flight_survive_a_redis_restart(
    redis_server: RedisProcess,
) -> None:
    """Reservations lost with Redis count as spent: nobody can take their credits."""
    async with RedisCreditBudget(redis_server.url, api_key=KEY, max_credits=30) as budget:
        for _ in range(3):
            await budget.reserve(10)  # three requests in flight, nothing settled yet
        redis_server.restart()
        with pytest.raises(BudgetExceededError, match="Redis restarted"):
            await budget.reserve(10)
        for _ in range(3):
            await budget.settle(10, charged=True)
        with pytest.raises(BudgetExceededError, match="of 30 credits spent"):
            await budget.reserve(10)


# 3 -------------------------------------------------------------------------------------
async def test_a_drifting_field_never_costs_the_paid_profile() -> None:
    """ "verified": "true" and "followerCount": "1.2M" still give the profile, raw intact."""
    body = fake_profile("drift")
    body["user"]["verified"] = "true"
    body["stats"]["followerCount"] = "1.2M"

    async def handler(request: web.Request) -> web.Response:
        return web.json_response(body)

    server = await _serve(handler)
    try:
        async with AsyncDumplingClient(KEY, base_url=_url(server)) as client:
            profile = await client.get_tiktok_profile("drift")
    finally:
        await server.close()
    assert profile.user is not None and profile.user.verified is True
    assert profile.stats is not None and profile.stats.follower_count is None
    assert profile.raw == body and client.credits_spent == 10


# 4 -------------------------------------------------------------------------------------
async def test_gather_keeps_every_result_when_the_input_breaks(
    client: AsyncDumplingClient, server: FakeDumplingServer
) -> None:
    """A cursor that breaks after 50 items: the 50 paid results come with the error."""

    def rows() -> Iterator[str]:
        yield from (f"row{i}" for i in range(50))
        raise ConnectionResetError("cursor lost")

    with pytest.raises(InputFailedError) as caught:
        await client.gather_profiles(rows())
    results = caught.value.results
    assert [r.index for r in results] == list(range(50)) and all(r.ok for r in results)
    assert isinstance(caught.value.__cause__, ConnectionResetError)
    assert set(server.charged) == {r.handle for r in results}


# 5 -------------------------------------------------------------------------------------
async def test_a_failing_callback_loses_no_paid_result(
    client: AsyncDumplingClient, server: FakeDumplingServer
) -> None:
    """on_result raising on the 4th result: every charged lookup is still yielded."""
    calls: list[ProfileResult] = []

    def on_result(result: ProfileResult) -> None:
        calls.append(result)
        if len(calls) == 4:
            raise RuntimeError("progress bar broke")

    yielded: list[ProfileResult] = []

    async def consume() -> None:
        handles = [f"cb{i}" for i in range(200)]
        async for result in client.iter_profiles(handles, concurrency=16, on_result=on_result):
            yielded.append(result)

    with pytest.raises(RuntimeError, match="progress bar broke"):
        await consume()
    assert len(calls) == 4  # not called again once it failed
    assert set(server.charged) == {r.handle for r in yielded}
    assert len(yielded) >= 16  # what was in flight was finished and delivered
    assert len(yielded) < 200  # and no more input was read


# 6 -------------------------------------------------------------------------------------
async def test_results_are_yielded_while_the_input_is_slow(
    client: AsyncDumplingClient,
) -> None:
    """A result is yielded as soon as it is ready, not when the next input item comes."""
    second = asyncio.Event()

    async def slow_input() -> AsyncIterator[str]:
        yield "first"
        await second.wait()  # the next item comes only after the first result is seen
        yield "second"

    seen: list[str] = []
    async with asyncio.timeout(10):
        async for result in client.iter_profiles(slow_input()):
            seen.append(result.handle)
            second.set()
    assert seen == ["first", "second"]


# 7, 8 ----------------------------------------------------------------------------------
async def test_a_cancelled_reservation_is_given_back_at_once(redis_server: RedisProcess) -> None:
    """Cancelling reserve() while Redis runs it leaves no reservation holding credits."""
    async with RedisCreditBudget(
        redis_server.url, api_key=KEY, max_credits=10, stale_after=3600
    ) as budget:
        # Surely run: Redis answers at once, but the answer is held on its way back
        # until after the cancellation, as on a slow network.
        async with (
            _SlowReplies(redis_server.port, delay=0.3) as relay,
            RedisCreditBudget(relay.url, api_key=KEY, max_credits=10, stale_after=3600) as slow,
        ):
            await slow.reserve(10)  # connected, scripts loaded: the next call sends at once
            await slow.settle(10, charged=False)
            task = asyncio.ensure_future(slow.reserve(10))
            await asyncio.sleep(0.1)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
                await slow.settle(10, charged=False)  # it won the race: give it back
            async with asyncio.timeout(5):  # a leaked reservation would hold it for an hour
                await slow.reserve(10)
            await slow.settle(10, charged=False)
        # And cancellations at every other point of its way.
        for _ in range(20):
            task = asyncio.ensure_future(budget.reserve(10))
            await asyncio.sleep(0)  # the script is on its way to Redis
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            else:  # it won the race with the cancellation: give it back as a caller would
                await budget.settle(10, charged=False)
            async with asyncio.timeout(2):  # a leaked reservation would hold it for an hour
                await budget.reserve(10)
            await budget.settle(10, charged=False)


async def test_an_unrecorded_charge_is_replayed_once(tmp_path: Path) -> None:
    """A charge Redis could not record is added once, however many reservations follow."""
    redis_server = RedisProcess(tmp_path, persist=True)  # comes back with its state
    async with RedisCreditBudget(redis_server.url, api_key=KEY, max_credits=1000) as budget:
        await budget.reserve(10)
        redis_server.stop()
        await budget.settle(10, charged=True)  # Redis is gone: not recorded yet
        redis_server.start()
        await asyncio.gather(*(budget.reserve(10) for _ in range(8)))
        for _ in range(8):
            await budget.settle(10, charged=False)
        assert budget.spent == 10
    redis_server.stop()


# 9 -------------------------------------------------------------------------------------
def _gzip_bomb(inflated: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing
    chunk = b"\0" * (1 << 20)
    parts = [packer.compress(chunk) for _ in range(inflated >> 20)]
    return b"".join(parts) + packer.flush()


async def test_a_compressed_bomb_is_refused_with_bounded_memory() -> None:
    """300 KiB of gzip that inflates to 300 MiB: InvalidResponseError, memory bounded."""
    bomb = _gzip_bomb(300 << 20)
    assert len(bomb) < 400 << 10
    assert zlib.decompressobj(31).decompress(bomb, 16) == b"\0" * 16

    async def handler(request: web.Request) -> web.Response:
        return web.Response(
            body=bomb,
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )

    server = await _serve(handler)
    process = psutil.Process()
    before = process.memory_info().rss
    try:
        async with AsyncDumplingClient(KEY, base_url=_url(server)) as client:
            with pytest.raises(InvalidResponseError, match="cap"):
                await client.get_tiktok_profile("bomb")
    finally:
        await server.close()
    assert process.memory_info().rss - before < 64 << 20  # the default cap is 4 MiB
    assert client.credits_spent == 10  # a 200 arrived: it was paid for


async def test_an_unusable_paid_body_reaches_the_command_lines_output(
    client: AsyncDumplingClient, server: FakeDumplingServer
) -> None:
    """The body of a paid 200 that could not be used is kept on the output line."""
    from dumpling_async.cli._input import InputEntry
    from dumpling_async.cli._output import record_bytes

    server.inject("html_200", handle="someone")
    [result] = await client.gather_profiles(["someone"])
    line = orjson.loads(record_bytes(InputEntry(0, 1, "someone"), result, "jsonl"))
    assert line["error"]["type"] == "InvalidResponseError"
    assert line["error"]["body"].startswith("<html>")
