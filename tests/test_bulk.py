"""The bulk engine: order, de-duplication, laziness, aborts, budget, cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from conftest import KEY

from dumpling_async import (
    AdaptiveRateLimiter,
    AsyncDumplingClient,
    AuthenticationError,
    BatchAbortedError,
    BudgetExceededError,
    ClientClosedError,
    DuplicateHandleError,
    InsufficientCreditsError,
    InvalidHandleError,
    Permit,
    ProfileNotFoundError,
    ProfileResult,
)
from dumpling_async.testing import FakeDumplingServer

MakeClient = Callable[..., AsyncDumplingClient]


def client_tasks() -> set[asyncio.Task[object]]:
    """Tasks other than this test's and the in-process fake server's request handlers."""
    return {
        t
        for t in asyncio.all_tasks()
        if t is not asyncio.current_task() and "aiohttp/web_" not in repr(t)
    }


async def test_gather_keeps_input_order_and_dedupes(
    client: AsyncDumplingClient, server: FakeDumplingServer
) -> None:
    """One result per input position, in order; repeats cost one request and share it."""
    handles = ["alice", "@Alice", "bob", "not valid!", "unknown_zed", "https://tiktok.com/@bob", 7]
    results = await client.gather_profiles(handles)
    assert [r.index for r in results] == list(range(len(handles)))
    assert [r.input for r in results] == handles
    assert [r.handle for r in results][:3] == ["alice", "alice", "bob"]
    assert results[0].ok and results[1].profile is results[0].profile
    assert results[5].profile is results[2].profile
    assert isinstance(results[3].error, InvalidHandleError)
    assert isinstance(results[4].error, ProfileNotFoundError)
    assert isinstance(results[6].error, InvalidHandleError)
    assert [r.first_index for r in results] == [None, 0, None, None, None, 2, None]
    assert server.charged == {"alice": 1, "bob": 1}
    assert len(server.records) == 3  # alice, bob, unknown_zed
    with pytest.raises(ProfileNotFoundError):
        results[4].unwrap()
    assert results[0].unwrap() is results[0].profile


async def test_iter_profiles_yields_every_position(
    client: AsyncDumplingClient, server: FakeDumplingServer
) -> None:
    """iter_profiles yields each position once, with its index and input."""
    handles = [f"user{i % 40}" for i in range(100)]
    seen: list[ProfileResult] = []
    async for result in client.iter_profiles(handles, concurrency=5, on_result=seen.append):
        assert result.input == handles[result.index]
        assert result.ok
    assert sorted(r.index for r in seen) == list(range(100))
    assert len(server.records) == 40


async def test_input_is_consumed_lazily(client: AsyncDumplingClient) -> None:
    """A huge generator is read only a window ahead of the results."""
    pulled = 0

    def handles() -> Iterator[str]:
        nonlocal pulled
        for i in range(10**9):
            pulled += 1
            yield f"user{i}"

    count = 0
    async with contextlib.aclosing(client.iter_profiles(handles(), concurrency=4)) as results:
        async for _ in results:
            count += 1
            assert pulled <= count + 4 + 4
            if count == 50:
                break
    assert pulled < 60


async def test_async_iterable_input(client: AsyncDumplingClient) -> None:
    """An async generator works as input."""

    async def handles() -> AsyncIterator[str]:
        for i in range(20):
            yield f"user{i}"

    results = await client.gather_profiles(handles())
    assert len(results) == 20 and all(r.ok for r in results)


async def test_authentication_error_aborts_batch() -> None:
    """A 401 stops new requests; every other handle gets BatchAbortedError with the cause."""
    async with (
        FakeDumplingServer(api_keys={"the-right-key"}) as server,
        AsyncDumplingClient(KEY, base_url=server.url, max_concurrency=4) as client,
    ):
        results = await client.gather_profiles(f"user{i}" for i in range(200))
    assert len(results) == 200
    auth = [r for r in results if isinstance(r.error, AuthenticationError)]
    aborted = [r for r in results if isinstance(r.error, BatchAbortedError)]
    assert auth and len(auth) + len(aborted) == 200
    assert all(isinstance(r.error.cause, AuthenticationError) for r in aborted)  # type: ignore[union-attr]
    assert len(server.records) <= 4


async def test_out_of_credits_aborts_batch() -> None:
    """A 403 stops the batch; what was charged before it is kept and counted."""
    async with (
        FakeDumplingServer(credits=50) as server,
        AsyncDumplingClient(KEY, base_url=server.url, max_concurrency=1) as client,
    ):
        results = await client.gather_profiles(f"user{i}" for i in range(30))
    ok = [r for r in results if r.ok]
    assert len(ok) == 5
    assert sum(isinstance(r.error, InsufficientCreditsError) for r in results) == 1
    assert sum(isinstance(r.error, BatchAbortedError) for r in results) == 24
    assert client.credits_spent == server.credits_charged == 50


async def test_budget_is_never_exceeded_under_concurrency() -> None:
    """max_credits holds exactly with many requests in flight; 404s give credits back."""
    handles = [f"unknown{i}" if i % 3 == 0 else f"user{i}" for i in range(300)]
    async with (
        FakeDumplingServer(latency=0.005) as server,
        AsyncDumplingClient(KEY, base_url=server.url, max_concurrency=32, max_credits=500) as c,
    ):
        results = await c.gather_profiles(handles, concurrency=32)
    assert server.credits_charged == 500 == c.credits_spent
    assert sum(r.ok for r in results) == 50
    assert all(
        isinstance(r.error, BudgetExceededError | ProfileNotFoundError) for r in results if not r.ok
    )
    assert any(isinstance(r.error, BudgetExceededError) for r in results)


async def test_cancelling_gather_leaves_nothing_behind(
    make_client: MakeClient, server: FakeDumplingServer
) -> None:
    """Cancelling gather_profiles cancels requests in flight and returns every slot."""
    server.latency = 0.5
    client = make_client(max_credits=10_000)
    job = asyncio.ensure_future(client.gather_profiles(f"user{i}" for i in range(100)))
    await asyncio.sleep(0.1)
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    await asyncio.sleep(0)
    assert client_tasks() == set()
    assert client.rate_limit.in_flight == 0
    assert client._budget._reserved == 0  # type: ignore[attr-defined]
    assert client.credits_spent == 0
    await client.aclose()
    gc.collect()


async def test_leaving_iteration_early_cancels_requests(
    client: AsyncDumplingClient, server: FakeDumplingServer
) -> None:
    """Breaking out of iter_profiles cancels what is in flight; no task is left."""
    server.latency = 0.05
    async for result in client.iter_profiles((f"user{i}" for i in range(100)), concurrency=8):
        assert result.ok
        break
    for _ in range(5):  # the generator is finalised by the event loop's asyncgen hook
        await asyncio.sleep(0.01)
    assert client_tasks() == set()
    assert client.rate_limit.in_flight == 0
    assert len(server.records) < 20


async def test_closed_client_refuses_bulk(client: AsyncDumplingClient) -> None:
    """Bulk calls on a closed client raise ClientClosedError."""
    await client.aclose()
    with pytest.raises(RuntimeError):
        await client.gather_profiles(["alice"])


async def test_before_send_records_every_handle_before_the_server_sees_it(
    client: AsyncDumplingClient, server: FakeDumplingServer
) -> None:
    """before_send hears each normalised handle before its request reaches the server."""
    recorded: list[str] = []

    def before_send(handle: str) -> None:
        assert handle not in server.charged  # not yet sent
        recorded.append(handle)

    names = [f"Sent_{i}" for i in range(30)]
    results = [r async for r in client.iter_profiles(names, before_send=before_send)]
    assert all(r.ok for r in results)
    assert sorted(recorded) == sorted(server.charged) == sorted(n.lower() for n in names)


async def test_a_before_send_that_fails_stops_the_batch_unsent(
    client: AsyncDumplingClient, server: FakeDumplingServer
) -> None:
    """A write-ahead record that cannot be written: that request is not sent, and the
    batch stops, every later position with BatchAbortedError naming the cause."""
    recorded: list[str] = []

    def before_send(handle: str) -> None:
        if len(recorded) == 5:
            raise OSError(28, "No space left on device")
        recorded.append(handle)

    names = [f"full_{i}" for i in range(40)]
    results = [r async for r in client.iter_profiles(names, concurrency=1, before_send=before_send)]
    assert len(results) == 40 and sorted(server.charged) == sorted(recorded)
    stopped = [r for r in results if not r.ok]
    assert len(stopped) == 35 and all(isinstance(r.error, BatchAbortedError) for r in stopped)
    cause = stopped[0].error.cause  # type: ignore[union-attr]
    assert isinstance(cause.__cause__, OSError) and "before_send failed" in str(cause)


async def test_duplicates_beyond_memory_are_not_paid_twice(
    client: AsyncDumplingClient, server: FakeDumplingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A repeat whose outcome was evicted is reported as a duplicate, never re-requested."""
    monkeypatch.setattr("dumpling_async._core.bulk._RECENT_OUTCOMES", 2)
    handles = ["a1", "b1", "c1", "d1", "a1"]
    results = [r async for r in client.iter_profiles(handles, concurrency=1)]
    last = next(r for r in results if r.index == 4)
    assert isinstance(last.error, DuplicateHandleError) and last.error.first_index == 0
    assert last.first_index == 0
    assert server.charged["a1"] == 1


async def test_failing_input_finishes_work_in_flight(
    client: AsyncDumplingClient, server: FakeDumplingServer
) -> None:
    """When the input raises, lookups already sent are yielded, then the error."""

    def handles() -> Iterator[str]:
        yield from ("alice", "bob", "carol")
        raise OSError("disk gone")

    seen: list[ProfileResult] = []

    async def consume() -> None:
        async for result in client.iter_profiles(handles()):
            seen.append(result)

    with pytest.raises(OSError, match="disk gone"):
        await consume()
    assert sorted(r.handle for r in seen) == ["alice", "bob", "carol"]
    assert all(r.ok for r in seen)
    assert len(server.charged) == 3


async def test_repeats_of_an_in_flight_handle_do_not_read_ahead(
    client: AsyncDumplingClient, server: FakeDumplingServer
) -> None:
    """Repeats waiting for their handle's lookup count against the read-ahead window."""
    server.latency = 0.05
    pulled = 0

    def handles() -> Iterator[str]:
        nonlocal pulled
        for _ in range(10**9):
            pulled += 1
            yield "same"

    async with contextlib.aclosing(client.iter_profiles(handles(), concurrency=4)) as results:
        async for result in results:
            assert result.ok
            break
    assert pulled <= 10
    assert len(server.records) == 1


async def test_every_repeat_names_its_first_position(
    client: AsyncDumplingClient, server: FakeDumplingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A repeat in flight, one answered from the recent outcomes and one evicted from them
    all carry the position that looked their handle up; nothing else does."""
    monkeypatch.setattr("dumpling_async._core.bulk._RECENT_OUTCOMES", 2)
    server.latency = 0.02
    # One lookup at a time: 1 waits for 0's lookup, 4 is answered from b2's kept outcome,
    # and by 7 a2's was evicted (only the last two are kept: c2 and d2).
    handles = ["a2", "@A2", "A2", "b2", "b2", "c2", "d2", "a2", "bad handle!", "bad handle!"]
    results = [r async for r in client.iter_profiles(handles, concurrency=1)]
    by_index = {r.index: r for r in results}
    assert [by_index[i].first_index for i in range(len(handles))] == [
        None, 0, 0, None, 3, None, None, 0, None, None
    ]  # fmt: skip
    assert by_index[1].profile is by_index[0].profile and by_index[4].ok
    assert isinstance(by_index[7].error, DuplicateHandleError)
    assert sorted(server.charged.items()) == [("a2", 1), ("b2", 1), ("c2", 1), ("d2", 1)]


async def test_repeats_after_a_batch_stopped_name_their_first_position(
    client: AsyncDumplingClient, server: FakeDumplingServer
) -> None:
    """Once the batch has stopped, a repeat of a handle never attempted still names its
    first position (and shares its BatchAbortedError), so a caller can skip it."""

    def before_send(handle: str) -> None:
        raise OSError(28, "No space left on device")

    handles = ["aa", "bb", "bb", "cc", "@CC"]
    results = [
        r async for r in client.iter_profiles(handles, concurrency=1, before_send=before_send)
    ]
    by_index = {r.index: r for r in results}
    assert [by_index[i].first_index for i in range(len(handles))] == [None, None, 1, None, 3]
    assert all(isinstance(r.error, BatchAbortedError) for r in results)
    assert by_index[2].error is by_index[1].error and not server.charged


class _BrokenLimiter(AdaptiveRateLimiter):
    async def acquire(self) -> Permit:
        raise RuntimeError("plug-in bug")


async def test_unexpected_errors_become_results(server: FakeDumplingServer) -> None:
    """An unexpected exception ends its handle with a typed error; the batch goes on."""
    async with AsyncDumplingClient(KEY, base_url=server.url, rate_limiter=_BrokenLimiter()) as c:
        results = await c.gather_profiles(["alice", "bob"])
    assert [type(r.error).__name__ for r in results] == ["DumplingError", "DumplingError"]
    assert isinstance(results[0].error.__cause__, RuntimeError)  # type: ignore[union-attr]


async def test_overlapping_bulk_and_single_calls_pay_once(
    make_client: MakeClient, server: FakeDumplingServer
) -> None:
    """Two batches and single lookups in flight at once for the same handles buy each once."""
    client = make_client(max_concurrency=64)
    server.latency = 0.05  # every lookup is still in flight when the others ask
    handles = [f"shared{i}" for i in range(20)]
    first, second, *singles = await asyncio.gather(
        client.gather_profiles(handles),
        client.gather_profiles(list(reversed(handles))),
        *(client.get_tiktok_profile(h) for h in handles[:5]),
    )
    assert all(r.ok for r in first + second)
    assert [p.user.unique_id for p in singles if p.user] == handles[:5]
    assert server.charged == dict.fromkeys(handles, 1)
    assert client.credits_spent == 200


async def test_a_joined_lookup_survives_its_batch_being_cancelled(
    client: AsyncDumplingClient, server: FakeDumplingServer
) -> None:
    """A single call that joined a batch's lookup gets it, unpaid again, if the batch stops."""
    server.latency = 0.1
    batch = asyncio.ensure_future(client.gather_profiles(["joined"]))
    await asyncio.sleep(0.02)  # the batch's lookup is in flight
    single = asyncio.ensure_future(client.get_tiktok_profile("joined"))
    await asyncio.sleep(0.02)
    batch.cancel()
    profile = await single
    assert profile.user is not None and profile.user.unique_id == "joined"
    with pytest.raises(asyncio.CancelledError):
        await batch
    assert len(server.requests_for("joined")) == 1 and server.charged["joined"] == 1


async def test_closing_the_client_mid_batch_ends_every_position(
    make_client: MakeClient, server: FakeDumplingServer
) -> None:
    """aclose() during a batch gives its unfinished positions ClientClosedError results."""
    client = make_client()
    server.latency = 0.2
    results: list[ProfileResult] = []

    async def consume() -> None:
        async for result in client.iter_profiles([f"late{i}" for i in range(5)]):
            results.append(result)

    job = asyncio.ensure_future(consume())
    await asyncio.sleep(0.05)
    await client.aclose()
    await job
    assert sorted(r.index for r in results) == list(range(5))
    assert all(isinstance(r.error, ClientClosedError) for r in results)
