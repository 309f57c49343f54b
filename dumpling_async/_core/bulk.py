"""The bulk engine behind ``gather_profiles`` / ``iter_profiles`` and the video and
transcript helpers.

Input is consumed lazily, at most ``concurrency`` lookups run at once, and each unique
normalised input (handle, canonical video URL) is requested once: repeats wait for (or
reuse) its outcome. Memory is O(concurrency) plus a set of the keys seen. An
account-level error (401, 403) stops new requests at once; positions not attempted get
``BatchAbortedError``. What differs between profiles, videos and transcripts is a
:class:`BulkKind`.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
)
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import attrs

from .._errors import (
    AuthenticationError,
    BatchAbortedError,
    ClientClosedError,
    DumplingError,
    DuplicateHandleError,
    InsufficientCreditsError,
    InvalidInputError,
)
from .._media import TranscriptResult, VideoResult
from .._models import ProfileResult
from .endpoints import PROFILE, TRANSCRIPT, VIDEO, flight_key
from .handles import normalize_handle
from .inputs import normalize_video_url

if TYPE_CHECKING:
    from .._client import AsyncDumplingClient

__all__ = ["PROFILES", "BulkKind", "gather_results", "iter_results", "transcripts", "videos"]


class _Indexed(Protocol):
    @property
    def index(self) -> int: ...


R = TypeVar("R", bound=_Indexed)
StopCheck = Callable[[], DumplingError | None]

# Outcomes kept for repeats that arrive after their handle finished; beyond this a
# repeat gets DuplicateHandleError (never a second request).
_RECENT_OUTCOMES = 512
_ACCOUNT_ERRORS = (AuthenticationError, InsufficientCreditsError)

Outcome = Any  # a model, or the DumplingError the lookup ended with


@attrs.frozen
class BulkKind(Generic[R]):
    """What a bulk run looks up: how inputs are keyed, fetched and reported."""

    normalize: Callable[[object], str]
    key: Callable[[str], tuple[str, str]]  # the single-flight key
    fetch: Callable[[AsyncDumplingClient, str, StopCheck], Awaitable[Any]]
    join: Callable[[AsyncDumplingClient, str], Awaitable[Any]]  # a lookup already in flight
    result: Callable[[int, object, str, Outcome], R]


def _profile_result(index: int, given: object, handle: str, outcome: Outcome) -> ProfileResult:
    if isinstance(outcome, DumplingError):
        return ProfileResult(index=index, input=given, handle=handle, error=outcome)
    return ProfileResult(index=index, input=given, handle=handle, profile=outcome)


def _video_result(index: int, given: object, url: str, outcome: Outcome) -> VideoResult:
    if isinstance(outcome, DumplingError):
        return VideoResult(index=index, input=given, url=url, error=outcome)
    return VideoResult(index=index, input=given, url=url, video=outcome)


def _transcript_result(index: int, given: object, url: str, outcome: Outcome) -> TranscriptResult:
    if isinstance(outcome, DumplingError):
        return TranscriptResult(index=index, input=given, url=url, error=outcome)
    return TranscriptResult(index=index, input=given, url=url, transcript=outcome)


PROFILES: BulkKind[ProfileResult] = BulkKind(
    normalize_handle,
    lambda handle: flight_key(PROFILE, handle),
    lambda client, handle, stop: client._lookup(handle, should_stop=stop),
    lambda client, handle: client._profile_flight(handle),
    _profile_result,
)


def videos() -> BulkKind[VideoResult]:
    return BulkKind(
        normalize_video_url,
        lambda url: flight_key(VIDEO, url),
        lambda client, url, stop: client._video(url, should_stop=stop),
        lambda client, url: client._video_flight(url),
        _video_result,
    )


def transcripts(language: str) -> BulkKind[TranscriptResult]:
    return BulkKind(
        normalize_video_url,
        lambda url: flight_key(TRANSCRIPT, url, language),
        lambda client, url, stop: client._transcript(url, language, should_stop=stop),
        lambda client, url: client._transcript_flight(url, language),
        _transcript_result,
    )


async def _aiter(items: Iterable[object] | AsyncIterable[object]) -> AsyncIterator[object]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item


class _Job:
    """State of one bulk run."""

    def __init__(self, client: AsyncDumplingClient, kind: BulkKind[Any], keep_all: bool) -> None:
        self.client = client
        self.kind = kind
        self.abort: DumplingError | None = None
        self.waiting: dict[str, list[tuple[int, object]]] = {}  # handle -> positions
        self.first_index: dict[str, int] = {}  # every handle seen: the dedupe set
        self.kept: OrderedDict[str, Outcome] = OrderedDict()
        self.keep_all = keep_all

    def stop_reason(self) -> DumplingError | None:
        if self.abort is None:
            return None
        return BatchAbortedError(f"batch stopped: {self.abort}", cause=self.abort)

    def remember(self, handle: str, outcome: Outcome) -> None:
        self.kept[handle] = outcome
        if not self.keep_all and len(self.kept) > _RECENT_OUTCOMES:
            self.kept.popitem(last=False)

    def repeat_outcome(self, handle: str) -> Outcome:
        outcome = self.kept.get(handle)
        if outcome is not None:
            return outcome
        first = self.first_index[handle]
        message = f"{handle!r} was answered at position {first}"
        return self.stamp(DuplicateHandleError(message, first_index=first), handle)

    def stamp(self, error: DumplingError, key: str) -> DumplingError:
        """Name the input on an error made for the whole batch."""
        error.target = key
        error.handle = key if self.kind is PROFILES else None
        return error

    async def fetch(self, handle: str, join: bool) -> Outcome:
        """The outcome of *handle*: looked up, or joined when another call has it in flight."""
        try:
            if join:
                return await self.kind.join(self.client, handle)
            return await self.kind.fetch(self.client, handle, self.stop_reason)
        except BatchAbortedError as error:
            return self.stamp(error, handle)
        except DumplingError as error:
            if isinstance(error, _ACCOUNT_ERRORS) and self.abort is None:
                self.abort = error
            return error
        except Exception as exc:
            # A bug or a failing plug-in (limiter, budget) must not lose the batch:
            # this handle ends with a typed error that carries the cause.
            unexpected = DumplingError(f"unexpected {type(exc).__name__}: {exc}")
            unexpected.__cause__ = exc
            return self.stamp(unexpected, handle)


async def iter_results(
    client: AsyncDumplingClient,
    kind: BulkKind[R],
    handles: Iterable[object] | AsyncIterable[object],
    *,
    concurrency: int | None = None,
    on_result: Callable[[R], None] | None = None,
    keep_all: bool = False,
) -> AsyncGenerator[R, None]:
    """Yield one result per input position, in completion order."""
    width = client.max_concurrency if concurrency is None else concurrency
    if width < 1:
        raise ValueError("concurrency must be >= 1")
    client._check_open()
    job = _Job(client, kind, keep_all)
    source = _aiter(handles)
    _result = kind.result
    ready: deque[R] = deque()
    tasks: dict[asyncio.Task[Outcome], str] = {}
    # Finished lookups arrive here through done-callbacks: O(1) per completion, where
    # asyncio.wait() would re-scan every task in flight each time.
    finished: deque[asyncio.Task[Outcome]] = deque()
    wake = asyncio.Event()

    def on_done(task: asyncio.Task[Outcome]) -> None:
        finished.append(task)
        wake.set()

    index = 0
    parked = 0
    exhausted = False
    input_error: BaseException | None = None
    try:
        while True:
            # Read input while there is room; never more than the window ahead.
            while not exhausted and len(tasks) < width and len(ready) + parked < width:
                try:
                    given = await anext(source)
                except StopAsyncIteration:
                    exhausted = True
                    break
                except Exception as exc:
                    # The input failed: finish (and report) what is in flight, then raise.
                    input_error, exhausted = exc, True
                    break
                position, index = index, index + 1
                try:
                    handle = kind.normalize(given)
                except InvalidInputError as error:
                    ready.append(_result(position, given, str(given)[:200], error))
                    continue
                if handle in job.waiting:
                    job.waiting[handle].append((position, given))
                    parked += 1  # a repeat waiting for its handle's lookup
                elif handle in job.first_index:
                    ready.append(_result(position, given, handle, job.repeat_outcome(handle)))
                elif job.abort is not None:
                    reason = job.stop_reason()
                    assert reason is not None
                    ready.append(_result(position, given, handle, job.stamp(reason, handle)))
                else:
                    job.first_index[handle] = position
                    job.waiting[handle] = [(position, given)]
                    key = kind.key(handle)
                    joined = client._in_flight(key)
                    task = asyncio.ensure_future(job.fetch(handle, joined))
                    if not joined:  # other calls for it join this task (single flight)
                        client._adopt(key, task)
                    task.add_done_callback(on_done)
                    tasks[task] = handle
            while ready:
                result = ready.popleft()
                if on_result is not None:
                    on_result(result)
                yield result
            if not tasks:
                if exhausted:
                    if input_error is not None:
                        raise input_error
                    return
                continue
            if not finished:
                wake.clear()
                await wake.wait()
            while finished:
                task = finished.popleft()
                handle = tasks.pop(task)
                if task.cancelled():  # aclose() stopped the client's lookups
                    outcome = job.stamp(ClientClosedError("the client was closed"), handle)
                else:
                    outcome = task.result()
                job.remember(handle, outcome)
                positions = job.waiting.pop(handle)
                parked -= len(positions) - 1
                for position, given in positions:
                    ready.append(_result(position, given, handle, outcome))
    finally:
        cancelled = []
        for task, handle in tasks.items():
            task.remove_done_callback(on_done)
            if not client._disown(kind.key(handle), task):
                task.cancel()
                cancelled.append(task)
        if cancelled:
            await asyncio.gather(*cancelled, return_exceptions=True)
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            await aclose()


async def gather_results(
    client: AsyncDumplingClient,
    kind: BulkKind[R],
    handles: Iterable[object] | AsyncIterable[object],
    *,
    concurrency: int | None = None,
) -> list[R]:
    """All results, in input order; repeats share their key's outcome."""
    results: list[R | None] = []
    async for result in iter_results(client, kind, handles, concurrency=concurrency, keep_all=True):
        index = result.index
        if index >= len(results):
            results.extend([None] * (index + 1 - len(results)))
        results[index] = result
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]
