"""The fate module: which error an answer becomes, and what each error means for credits,
retries and a batch."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dumpling_async import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    DumplingError,
    InsufficientCreditsError,
    InvalidResponseError,
    ProfileNotFoundError,
    ProxyError,
    RateLimitError,
    ServerError,
    TranscriptNotFoundError,
    UpstreamError,
)
from dumpling_async._core.endpoints import TRANSCRIPT
from dumpling_async._core.fate import (
    Charge,
    charge_of,
    error_for_status,
    is_retryable,
    send_error,
    stops_batch,
)
from dumpling_async._core.transport import Failure, SendFailed

SCALARS = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)

EXPECTED = {
    400: BadRequestError,
    401: AuthenticationError,
    403: InsufficientCreditsError,
    404: ProfileNotFoundError,
    407: ProxyError,  # the proxy's answer, not the API's
    429: RateLimitError,
    500: ServerError,
    502: UpstreamError,
    503: UpstreamError,
    504: UpstreamError,
}


@given(st.integers(300, 599), st.binary(max_size=300) | JSON.map(lambda v: json.dumps(v).encode()))
def test_error_bodies_map_by_status(status: int, body: bytes) -> None:
    """Any bytes with any error status give the status's error class with a message."""
    err = error_for_status(
        status, body, reason="Reason", headers={}, retry_after=None, rate_limit=None
    )
    expected = EXPECTED.get(status, ServerError if status >= 500 else APIStatusError)
    assert type(err) is expected
    assert err.status == status and isinstance(err.message, str) and err.message


@given(st.text(max_size=50), st.text(max_size=10))
def test_both_error_shapes_are_read(message: str, code: str) -> None:
    """The flat and nested vendor error shapes both yield the message."""
    flat = orjson.dumps({"error": message})
    nested = orjson.dumps({"status": "error", "error": {"code": code, "message": message}})
    for body in (flat, nested):
        err = error_for_status(
            404,
            body,
            reason="Not Found",
            headers={},
            retry_after=None,
            rate_limit=None,
        )
        assert err.message == (message or "Not Found")[:1000]


def test_the_endpoint_chooses_the_404_class() -> None:
    """A 404 takes the answering endpoint's not-found class; named after its call, it
    says what it is about."""
    err = error_for_status(
        404,
        b'{"error": "No subtitles found for this video"}',
        reason="Not Found",
        headers={},
        retry_after=None,
        rate_limit=None,
        not_found=TranscriptNotFoundError,
    )
    assert type(err) is TranscriptNotFoundError
    assert str(err) == "404: No subtitles found for this video"  # no call named yet
    TRANSCRIPT.identify(err, "https://vm.tiktok.com/ZMabcdef/")
    assert err.handle is None
    assert (
        str(err) == "404 for 'https://vm.tiktok.com/ZMabcdef/': No subtitles found for this video"
    )


def _status(status: int) -> APIStatusError:
    return error_for_status(status, b"", reason=None, headers={}, retry_after=None, rate_limit=None)


@pytest.mark.parametrize(
    ("error", "retryable", "with_opt_in", "stops"),
    [
        (_status(401), False, False, True),
        (_status(403), False, False, True),
        (_status(404), False, False, False),
        (_status(429), True, True, False),
        (_status(503), True, True, False),
        (_status(400), False, False, False),
        (APIConnectionError("refused"), True, True, False),
        (APIConnectionError("no answer", maybe_charged=True), False, True, False),
        (APITimeoutError("slow", maybe_charged=True), False, True, False),
        (APIConnectionError("cut mid-body", response_received=True), False, False, False),
        (InvalidResponseError("not JSON", status=200), False, False, False),
        (DumplingError("anything else"), False, False, False),
    ],
)
def test_each_failure_has_one_fate(
    error: DumplingError, retryable: bool, with_opt_in: bool, stops: bool
) -> None:
    """Retried (by default and with retry_unanswered) and batch-stopping, per error."""
    assert is_retryable(error) is retryable
    assert is_retryable(error, retry_unanswered=True) is with_opt_in
    assert stops_batch(error) is stops


@pytest.mark.parametrize(
    ("status", "went_out", "charge"),
    [
        (200, True, Charge.CONFIRMED),  # whatever became of its body
        (404, True, Charge.NONE),
        (429, True, Charge.NONE),
        (None, False, Charge.NONE),  # refused, DNS, a connect timeout
        (None, True, Charge.UNCERTAIN),  # a timeout, a dropped connection, a cancellation
    ],
)
def test_what_an_attempt_cost(status: int | None, went_out: bool, charge: Charge) -> None:
    """A 200 is charged; another status is not; no answer after sending may have been."""
    assert charge_of(status=status, went_out=went_out) is charge


def _failed(kind: Failure, *, went_out: bool = True, status: int | None = None) -> SendFailed:
    return SendFailed("ClientOSError: reset by peer", kind=kind, went_out=went_out, status=status)


def test_each_kind_of_failure_has_its_error_and_says_what_it_may_have_cost() -> None:
    """Timeouts become APITimeoutError, broken connections APIConnectionError, a proxy's
    refusal ProxyError, an oversized 200 InvalidResponseError; the charge is the caller's."""
    late = send_error(_failed(Failure.TIMEOUT), Charge.UNCERTAIN)
    assert type(late) is APITimeoutError and late.maybe_charged and not late.response_received
    assert "may have been charged" in str(late)
    refused = send_error(_failed(Failure.CONNECTION, went_out=False), Charge.NONE)
    assert type(refused) is APIConnectionError and "reset by peer" in str(refused)
    assert not refused.maybe_charged and not refused.response_received
    cut = send_error(_failed(Failure.CONNECTION, status=200), Charge.CONFIRMED)
    assert isinstance(cut, APIConnectionError) and cut.response_received and not cut.maybe_charged
    proxy = send_error(_failed(Failure.PROXY, went_out=False, status=407), Charge.NONE)
    assert type(proxy) is ProxyError and proxy.status == 407 and "credentials" in str(proxy)
    big = send_error(_failed(Failure.TOO_LARGE, status=200), Charge.CONFIRMED)
    assert type(big) is InvalidResponseError and big.status == 200
