"""The request pipeline in memory: retries, classification and the budget, answer by answer.

These run the real pipeline over ``MockTransport`` (no socket), so each test scripts the
exact answers it needs; the same behaviours are also tested over real sockets against the
fake server in test_client.py and test_faults.py.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import orjson
import pytest
from multidict import CIMultiDict
from yarl import URL

from dumpling_async import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    BudgetExceededError,
    ClientClosedError,
    DumplingError,
    InsufficientCreditsError,
    InvalidResponseError,
    ProfileNotFoundError,
    ProxyError,
    RateLimitError,
    RetryPolicy,
    ServerError,
    TikTokProfile,
    UpstreamError,
    VideoNotFoundError,
)
from dumpling_async._core.budget import LocalCreditBudget
from dumpling_async._core.concurrency import Concurrency
from dumpling_async._core.converter import parse_model
from dumpling_async._core.endpoints import PROFILE, VIDEO, Call, CreditCosts
from dumpling_async._core.hooks import (
    ClientHooks,
    CreditsEvent,
    HookRunner,
    ResponseEvent,
    RetryEvent,
)
from dumpling_async._core.log import get_logger
from dumpling_async._core.mock import MockFailure, MockRequest, MockResponse, MockTransport
from dumpling_async._core.pipeline import Pipeline
from dumpling_async._core.ratelimit import AdaptiveRateLimiter, Permit, ResponseInfo
from dumpling_async._core.transport import Failure, Progress, Response
from dumpling_async.testing import fake_profile

FAST = RetryPolicy(max_attempts=3, backoff_base=0.001, backoff_max=0.002)
Answer = MockResponse | MockFailure
Answers = Callable[[MockRequest], Answer | Awaitable[Answer]]
# The two uncertain ends of an attempt, as a transport reports them.
NO_ANSWER = MockFailure(went_out=True, kind=Failure.TIMEOUT, cause=TimeoutError())
NEVER_SENT = MockFailure(went_out=False, cause=ConnectionRefusedError("refused"))


def scripted(*answers: Answer) -> Answers:
    """A handler giving *answers* in order, then the last one for ever."""
    queue: Iterator[Answer] = iter(answers)
    last = answers[-1]

    def handler(request: MockRequest) -> Answer:
        return next(queue, last)

    return handler


class Recorder(ClientHooks):
    """Keeps every event, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        for name in ("on_request", "on_response", "on_retry", "on_credits", "on_pause"):
            setattr(self, name, lambda event, name=name: self.events.append((name, event)))

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.events]

    def of(self, kind: type[Any]) -> list[Any]:
        return [event for _, event in self.events if isinstance(event, kind)]


def make_pipeline(
    handler: Answers,
    *,
    budget: LocalCreditBudget | None = None,
    retry: RetryPolicy = FAST,
    request_source: str | None = None,
    hooks: ClientHooks | None = None,
    concurrency: int = 4,
    limiter: AdaptiveRateLimiter | None = None,
) -> tuple[Pipeline, MockTransport]:
    transport = MockTransport(handler)
    pipeline = Pipeline(
        transport=transport,
        base_url=URL("https://api.example.test"),
        limiter=limiter or AdaptiveRateLimiter(),
        budget=budget or LocalCreditBudget(),
        retry=retry,
        costs=CreditCosts(),
        concurrency=Concurrency(concurrency),
        request_source=request_source,
        log=get_logger(),
        hooks=HookRunner(hooks, get_logger()) if hooks is not None else None,
    )
    return pipeline, transport


def profile_call(handle: str = "someone") -> tuple[Call, Callable[[bytes], Any]]:
    call = PROFILE.call(handle)
    return call, functools.partial(parse_model, TikTokProfile, requires="user")


def ok(handle: str = "someone") -> MockResponse:
    return MockResponse(200, fake_profile(handle))


async def test_a_200_is_parsed_charged_once_and_sent_as_json() -> None:
    """A 200 becomes the typed model; the body is the call's JSON plus requestSource."""
    pipeline, transport = make_pipeline(scripted(ok()), request_source="API")
    call, parse = profile_call()
    profile = await pipeline.call(call, parse)
    assert isinstance(profile, TikTokProfile) and profile.user is not None
    assert profile.user.unique_id == "someone"
    assert [r.json for r in transport.requests] == [{"handle": "someone", "requestSource": "API"}]
    assert str(transport.requests[0].url) == "https://api.example.test/api/v1/get-tiktok-profile"
    assert pipeline.budget.spent == 10


@pytest.mark.parametrize(
    ("status", "cls", "retried"),
    [
        (400, BadRequestError, False),
        (401, AuthenticationError, False),
        (403, InsufficientCreditsError, False),
        (404, ProfileNotFoundError, False),
        (429, RateLimitError, True),
        (500, ServerError, True),
        (502, UpstreamError, True),
        (503, UpstreamError, True),
        (504, UpstreamError, True),
        (418, APIStatusError, False),
    ],
)
async def test_each_error_status_has_its_class_its_retries_and_no_charge(
    status: int, cls: type[DumplingError], retried: bool
) -> None:
    """An error status raises its class after max_attempts (retryable) or at once; never charged."""
    answer = MockResponse(status, {"error": f"status {status}"}, headers={"Retry-After": "0"})
    pipeline, transport = make_pipeline(scripted(answer))
    call, parse = profile_call()
    with pytest.raises(cls) as caught:
        await pipeline.call(call, parse)
    assert type(caught.value) is cls
    assert caught.value.message == f"status {status}"
    assert caught.value.handle == "someone"
    assert len(transport.requests) == (3 if retried else 1)
    assert pipeline.budget.spent == 0


async def test_the_404_class_is_the_endpoints() -> None:
    """A 404 from the video endpoint is a VideoNotFoundError, not a profile's."""
    pipeline, _ = make_pipeline(scripted(MockResponse(404, {"error": "gone"})))
    url = "https://www.tiktok.com/@someone/video/7300000000000000001"
    with pytest.raises(VideoNotFoundError) as caught:
        await pipeline.call(VIDEO.call(url), lambda body: body)
    assert caught.value.target == url and caught.value.handle is None


async def test_retries_until_an_answer_then_charge_once() -> None:
    """Two 503s, a refused connection, then a 200: four attempts, one charge."""
    busy = MockResponse(503, {"error": "busy"}, headers={"Retry-After": "0"})
    pipeline, transport = make_pipeline(
        scripted(busy, busy, NEVER_SENT, ok()),
        retry=RetryPolicy(max_attempts=4, backoff_base=0.001),
    )
    call, parse = profile_call()
    await pipeline.call(call, parse)
    assert len(transport.requests) == 4
    assert pipeline.budget.spent == 10


async def test_an_unusable_200_is_charged_not_retried_and_keeps_its_body() -> None:
    """A 200 that is not a profile raises InvalidResponseError with the body; it was paid."""
    pipeline, transport = make_pipeline(scripted(MockResponse(200, body=b"<html>oops")))
    call, parse = profile_call()
    with pytest.raises(InvalidResponseError) as caught:
        await pipeline.call(call, parse)
    assert caught.value.body == b"<html>oops" and caught.value.status == 200
    assert len(transport.requests) == 1
    assert pipeline.budget.spent == 10


async def test_a_failure_after_the_200_status_is_charged_and_not_retried() -> None:
    """The connection breaking while a 200's body arrives: charged, never sent again."""
    cut = MockFailure(status=200, cause=ConnectionResetError("cut mid-body"))
    pipeline, transport = make_pipeline(scripted(cut, ok()))
    call, parse = profile_call()
    with pytest.raises(APIConnectionError) as caught:
        await pipeline.call(call, parse)
    assert caught.value.response_received
    assert len(transport.requests) == 1
    assert pipeline.budget.spent == 10


async def test_timeouts_map_to_api_timeout_error_with_a_scrubbed_cause() -> None:
    """A connect timeout (it never went out) is APITimeoutError, retried; its cause carries
    no frames."""
    connect = MockFailure(went_out=False, kind=Failure.TIMEOUT, cause=TimeoutError())
    pipeline, transport = make_pipeline(scripted(connect))
    call, parse = profile_call()
    with pytest.raises(APITimeoutError) as caught:
        await pipeline.call(call, parse)
    assert "timed out" in str(caught.value)
    cause = caught.value.__cause__
    assert isinstance(cause, TimeoutError) and cause.__traceback__ is None
    assert len(transport.requests) == 3


async def test_the_budget_refuses_before_anything_is_sent() -> None:
    """With 5 credits left and a price of 10, nothing is sent and BudgetExceededError says so."""
    pipeline, transport = make_pipeline(scripted(ok()), budget=LocalCreditBudget(5))
    call, parse = profile_call()
    with pytest.raises(BudgetExceededError):
        await pipeline.call(call, parse)
    assert transport.requests == []


async def test_a_stop_signal_ends_the_call_between_attempts() -> None:
    """A bulk job's stop check is asked before each attempt: after a 503, no retry."""
    stop_with: list[DumplingError] = []
    busy = MockResponse(503, {"error": "busy"}, headers={"Retry-After": "0"})

    def handler(request: MockRequest) -> MockResponse:
        stop_with.append(DumplingError("stopped by the batch"))
        return busy

    pipeline, transport = make_pipeline(handler)
    call, parse = profile_call()
    with pytest.raises(DumplingError, match="stopped by the batch"):
        await pipeline.call(call, parse, stop=lambda: stop_with[0] if stop_with else None)
    assert len(transport.requests) == 1
    assert pipeline.budget.spent == 0


async def test_a_closed_pipeline_refuses_and_closes_its_transport() -> None:
    """After aclose() every call raises ClientClosedError and nothing is sent."""
    pipeline, transport = make_pipeline(scripted(ok()))
    await pipeline.aclose()
    call, parse = profile_call()
    with pytest.raises(ClientClosedError):
        await pipeline.call(call, parse)
    assert transport.closed and transport.requests == []


# -- the two uncertain ends: went out with no answer, never went out -----------------------
async def test_an_attempt_that_went_out_and_got_no_answer_is_maybe_charged() -> None:
    """No answer after it went out: APITimeoutError, maybe charged, counted against the
    budget and in ``uncertain``, never sent again, and the hooks hear it was maybe paid."""
    hooks = Recorder()
    pipeline, transport = make_pipeline(
        scripted(NO_ANSWER, ok()), budget=LocalCreditBudget(100), hooks=hooks
    )
    call, parse = profile_call()
    with pytest.raises(APITimeoutError) as caught:
        await pipeline.call(call, parse)
    assert caught.value.maybe_charged and not caught.value.response_received
    assert "may have been charged" in str(caught.value)
    assert len(transport.requests) == 1
    assert (pipeline.confirmed, pipeline.uncertain, pipeline.budget.spent) == (0, 10, 10)
    assert hooks.names == ["on_request", "on_response", "on_credits"]
    (response,) = hooks.of(ResponseEvent)
    assert response.status == 0 and response.error is caught.value
    assert hooks.of(CreditsEvent) == [
        CreditsEvent(endpoint="get-tiktok-profile", target="someone", credits=10, confirmed=False)
    ]


async def test_an_unanswered_attempt_is_sent_again_only_when_the_user_opted_in() -> None:
    """With retry_unanswered, the maybe-charged attempt is retried: both are counted
    (one maybe, one confirmed), and its cost is heard before its retry."""
    hooks = Recorder()
    retry = RetryPolicy(max_attempts=3, backoff_base=0.001, retry_unanswered=True)
    pipeline, transport = make_pipeline(scripted(NO_ANSWER, ok()), retry=retry, hooks=hooks)
    call, parse = profile_call()
    profile = await pipeline.call(call, parse)
    assert isinstance(profile, TikTokProfile) and len(transport.requests) == 2
    assert (pipeline.confirmed, pipeline.uncertain, pipeline.budget.spent) == (10, 10, 20)
    assert hooks.names == [
        "on_request",
        "on_response",
        "on_credits",
        "on_retry",
        "on_request",
        "on_response",
        "on_credits",
    ]
    assert [event.confirmed for event in hooks.of(CreditsEvent)] == [False, True]
    (retried,) = hooks.of(RetryEvent)
    assert isinstance(retried.error, APITimeoutError) and retried.error.maybe_charged


async def test_an_attempt_that_never_went_out_costs_nothing_and_is_retried() -> None:
    """Never sent (refused): not charged, not in ``uncertain``, retried to max_attempts;
    the hooks hear three ends with no status and no credits."""
    hooks = Recorder()
    pipeline, transport = make_pipeline(
        scripted(NEVER_SENT), budget=LocalCreditBudget(100), hooks=hooks
    )
    call, parse = profile_call()
    with pytest.raises(APIConnectionError) as caught:
        await pipeline.call(call, parse)
    assert not caught.value.maybe_charged and not caught.value.response_received
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)
    assert len(transport.requests) == 3
    assert (pipeline.confirmed, pipeline.uncertain, pipeline.budget.spent) == (0, 0, 0)
    assert [event.status for event in hooks.of(ResponseEvent)] == [0, 0, 0]
    assert hooks.of(CreditsEvent) == [] and len(hooks.of(RetryEvent)) == 2


class DepartureLog(AdaptiveRateLimiter):
    """The adaptive limiter, keeping what it heard in order."""

    def __init__(self) -> None:
        super().__init__()
        self.heard: list[tuple[str, int]] = []

    def departed(self, permit: Permit) -> None:
        self.heard.append(("left", permit.seq))
        super().departed(permit)

    async def settle(self, permit: Permit, response: ResponseInfo | None) -> None:
        self.heard.append(("settled", permit.seq))
        await super().settle(permit, response)


async def test_the_limiter_hears_each_request_leave_before_it_settles() -> None:
    """A request that went out is told to the limiter as it leaves, then settled; one
    that never went out is only settled."""
    limiter = DepartureLog()
    pipeline, _ = make_pipeline(scripted(NEVER_SENT, ok()), limiter=limiter)
    call, parse = profile_call()
    await pipeline.call(call, parse)
    assert limiter.heard == [("settled", 1), ("left", 2), ("settled", 2)]


async def test_a_cancellation_after_the_request_went_out_is_maybe_charged() -> None:
    """Cancelled while the answer is awaited: counted as maybe charged, the budget holds it."""
    entered = asyncio.Event()

    async def never(request: MockRequest) -> Answer:
        entered.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    pipeline, _ = make_pipeline(never, budget=LocalCreditBudget(100))
    call, parse = profile_call()
    task = asyncio.create_task(pipeline.call(call, parse))
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (pipeline.confirmed, pipeline.uncertain, pipeline.budget.spent) == (0, 10, 10)


async def test_a_cancellation_before_the_request_went_out_costs_nothing() -> None:
    """Cancelled while waiting for the one slot (held by a request with no answer yet):
    nothing sent for it, nothing counted; only the request that went out is maybe paid."""
    entered = asyncio.Event()

    async def hold_the_first(request: MockRequest) -> Answer:
        entered.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    budget = LocalCreditBudget(100)
    pipeline, transport = make_pipeline(hold_the_first, budget=budget, concurrency=1)
    holder = asyncio.create_task(pipeline.call(*profile_call("first")))
    await entered.wait()
    waiter = asyncio.create_task(pipeline.call(*profile_call("second")))
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert [request.json["handle"] for request in transport.requests] == ["first"]
    assert (pipeline.uncertain, budget.spent) == (0, 0)
    holder.cancel()
    with pytest.raises(asyncio.CancelledError):
        await holder
    assert (pipeline.uncertain, budget.spent) == (10, 10)


# -- identity ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("answer", "cls"),
    [
        (MockResponse(404, {"error": "gone"}), ProfileNotFoundError),
        (MockResponse(200, body=b"[1, 2]"), InvalidResponseError),  # the parser's error
        (NO_ANSWER, APITimeoutError),
        (MockFailure(went_out=False, status=407, kind=Failure.PROXY), ProxyError),
    ],
)
async def test_every_error_names_the_call(answer: Answer, cls: type[DumplingError]) -> None:
    """Whatever an attempt ends with (a status, an unusable body, a failure, a proxy's
    refusal), the error carries the call's target and handle."""
    pipeline, _ = make_pipeline(scripted(answer), retry=RetryPolicy(max_attempts=1))
    call, parse = profile_call("named")
    with pytest.raises(cls) as caught:
        await pipeline.call(call, parse)
    assert (caught.value.target, caught.value.handle) == ("named", "named")


@pytest.mark.parametrize(
    ("answer", "text"),
    [
        (MockResponse(404, {"error": "gone"}), "404 for handle 'named': gone"),
        (NO_ANSWER, "request for handle 'named': timed out (TimeoutError)"),
        (
            MockFailure(went_out=False, status=407, kind=Failure.PROXY),
            "request for handle 'named': refused by the proxy: it wants credentials (407)",
        ),
    ],
)
async def test_an_answer_or_failure_says_what_it_was_about(answer: Answer, text: str) -> None:
    """The text of a status or transport error names the handle it was about."""
    pipeline, _ = make_pipeline(scripted(answer), retry=RetryPolicy(max_attempts=1))
    with pytest.raises(DumplingError) as caught:
        await pipeline.call(*profile_call("named"))
    assert str(caught.value).startswith(text)


async def test_errors_before_sending_name_the_call_too() -> None:
    """A budget refusal and a closed client name the call; a video has no handle."""
    pipeline, _ = make_pipeline(scripted(ok()), budget=LocalCreditBudget(5))
    url = "https://www.tiktok.com/@someone/video/7300000000000000001"
    with pytest.raises(BudgetExceededError) as refused:
        await pipeline.call(VIDEO.call(url), lambda body: body)
    assert (refused.value.target, refused.value.handle) == (url, None)
    pipeline, _ = make_pipeline(scripted(ok()))
    await pipeline.aclose()
    with pytest.raises(ClientClosedError) as closed:
        await pipeline.call(PROFILE.call("later"), lambda body: body)
    assert (closed.value.target, closed.value.handle) == ("later", "later")


async def test_the_limiter_is_told_how_unevenly_a_request_left() -> None:
    """A request held 0.2 s while others leave every 20 ms reaches the limiter's answer
    with that lag, less the longest spell when none left, as ``sent_late``; one held as
    long while nothing else leaves (the whole client held) with none."""

    class LateTransport(MockTransport):
        async def post(self, url: URL, body: bytes, progress: Progress) -> Response:
            handle = orjson.loads(body)["handle"]
            held = 0.2 if handle == "slow" else int(handle[-1]) * 0.02
            await asyncio.sleep(held)  # the event loop busy elsewhere
            progress.leave()
            progress.status = 200
            headers = CIMultiDict({"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "90"})
            return Response(200, headers, orjson.dumps(fake_profile(handle)), None)

    told: list[ResponseInfo | None] = []

    class Recording(AdaptiveRateLimiter):
        async def settle(self, permit: Any, response: ResponseInfo | None) -> None:
            told.append(response)
            await super().settle(permit, response)

    pipeline, _ = make_pipeline(scripted(ok()), concurrency=12, limiter=Recording())
    pipeline.transport = LateTransport(scripted(ok()))
    handles = ["slow", *(f"quick{i}" for i in range(1, 10))]
    await asyncio.gather(*(pipeline.call(*profile_call(handle)) for handle in handles))
    slow = told[-1]  # the last to leave
    # 0.18 s; a stall of up to 80 ms anywhere in the wait still leaves 0.1 s.
    assert slow is not None and 0.1 <= slow.sent_late < 1.0, told
    told.clear()
    await pipeline.call(*profile_call("slow"))
    (alone,) = told
    assert alone is not None and alone.sent_late == 0.0
