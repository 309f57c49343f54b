"""The request pipeline in memory: retries, classification and the budget, answer by answer.

These run the real pipeline over ``MockTransport`` (no socket), so each test scripts the
exact answers it needs; the same behaviours are also tested over real sockets against the
fake server in test_client.py and test_faults.py.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import pytest
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
from dumpling_async._core.log import get_logger
from dumpling_async._core.mock import MockRequest, MockResponse, MockTransport
from dumpling_async._core.pipeline import Pipeline
from dumpling_async._core.ratelimit import AdaptiveRateLimiter
from dumpling_async.testing import fake_profile

FAST = RetryPolicy(max_attempts=3, backoff_base=0.001, backoff_max=0.002)
Answers = Callable[[MockRequest], MockResponse]


def scripted(*answers: MockResponse | BaseException) -> Answers:
    """A handler giving *answers* in order, then the last one for ever."""
    queue: Iterator[MockResponse | BaseException] = iter(answers)
    last: list[MockResponse | BaseException] = [answers[-1]]

    def handler(request: MockRequest) -> MockResponse:
        answer = next(queue, last[0])
        if isinstance(answer, BaseException):
            raise answer
        return answer

    return handler


def make_pipeline(
    handler: Answers,
    *,
    budget: LocalCreditBudget | None = None,
    retry: RetryPolicy = FAST,
    request_source: str | None = None,
) -> tuple[Pipeline, MockTransport]:
    transport = MockTransport(handler)
    pipeline = Pipeline(
        transport=transport,
        base_url=URL("https://api.example.test"),
        limiter=AdaptiveRateLimiter(),
        budget=budget or LocalCreditBudget(),
        retry=retry,
        costs=CreditCosts(),
        concurrency=Concurrency(4),
        request_source=request_source,
        log=get_logger(),
    )
    return pipeline, transport


def profile_call(handle: str = "someone") -> tuple[Call, Callable[[bytes], Any]]:
    call = PROFILE.call(handle)
    return call, functools.partial(parse_model, TikTokProfile, handle=handle, target=handle)


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
    """Two 503s, a dropped connection, then a 200: four attempts, one charge."""
    dropped = aiohttp.ClientConnectionError("connection reset")
    busy = MockResponse(503, {"error": "busy"}, headers={"Retry-After": "0"})
    pipeline, transport = make_pipeline(
        scripted(busy, busy, dropped, ok()), retry=RetryPolicy(max_attempts=4, backoff_base=0.001)
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
    cut = MockResponse(200, fail=aiohttp.ClientPayloadError("cut mid-body"))
    pipeline, transport = make_pipeline(scripted(cut, ok()))
    call, parse = profile_call()
    with pytest.raises(APIConnectionError) as caught:
        await pipeline.call(call, parse)
    assert caught.value.response_received
    assert len(transport.requests) == 1
    assert pipeline.budget.spent == 10


async def test_timeouts_map_to_api_timeout_error_with_a_scrubbed_cause() -> None:
    """TimeoutError from the transport is APITimeoutError; its cause carries no frames."""
    pipeline, transport = make_pipeline(scripted(TimeoutError()))
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
