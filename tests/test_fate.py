"""The fate module: which error an answer becomes, and what each error means for credits,
retries and a batch."""

from __future__ import annotations

import json

import aiohttp
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
    RateLimitError,
    ServerError,
    TranscriptNotFoundError,
    UpstreamError,
)
from dumpling_async._core.fate import (
    error_for_status,
    is_retryable,
    scrubbed,
    stops_batch,
    transport_error,
    was_charged,
)

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
        status, body, reason="Reason", handle="h", headers={}, retry_after=None, rate_limit=None
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
            handle=None,
            headers={},
            retry_after=None,
            rate_limit=None,
        )
        assert err.message == (message or "Not Found")[:1000]


def test_the_endpoint_chooses_the_404_class() -> None:
    """A 404 takes the answering endpoint's not-found class."""
    err = error_for_status(
        404,
        b'{"error": "No subtitles found for this video"}',
        reason="Not Found",
        handle=None,
        target="https://vm.tiktok.com/ZMabcdef/",
        headers={},
        retry_after=None,
        rate_limit=None,
        not_found=TranscriptNotFoundError,
    )
    assert type(err) is TranscriptNotFoundError
    assert (
        str(err) == "404 for 'https://vm.tiktok.com/ZMabcdef/': No subtitles found for this video"
    )


def _status(status: int) -> APIStatusError:
    return error_for_status(
        status, b"", reason=None, handle="h", headers={}, retry_after=None, rate_limit=None
    )


@pytest.mark.parametrize(
    ("error", "charged", "retryable", "stops"),
    [
        (_status(401), False, False, True),
        (_status(403), False, False, True),
        (_status(404), False, False, False),
        (_status(429), False, True, False),
        (_status(503), False, True, False),
        (_status(400), False, False, False),
        (APIConnectionError("reset", response_received=False), False, True, False),
        (APIConnectionError("cut mid-body", response_received=True), True, False, False),
        (APITimeoutError("slow", response_received=False), False, True, False),
        (InvalidResponseError("not JSON", status=200), True, False, False),
        (InvalidResponseError("too big", status=None), False, False, False),
        (DumplingError("anything else"), False, False, False),
    ],
)
def test_each_failure_has_one_fate(
    error: DumplingError, charged: bool, retryable: bool, stops: bool
) -> None:
    """Charged, retryable and batch-stopping are decided per error, in one place."""
    assert (was_charged(error), is_retryable(error), stops_batch(error)) == (
        charged,
        retryable,
        stops,
    )


def test_transport_errors_are_typed_and_their_cause_is_scrubbed() -> None:
    """Timeouts become APITimeoutError, other failures APIConnectionError; the cause keeps
    its message but loses its frames and aiohttp's request headers."""
    assert type(transport_error(TimeoutError(), "h", "h", response_received=False)) is (
        APITimeoutError
    )
    err = transport_error(
        aiohttp.ClientConnectionError("reset by peer"), "h", "h", response_received=False
    )
    assert type(err) is APIConnectionError and "reset by peer" in str(err)
    try:
        raise aiohttp.ClientResponseError(
            aiohttp.RequestInfo(
                "https://x.test", "POST", {"Authorization": "Bearer sk-secret"}, "https://x.test"
            ),
            (),
        )
    except aiohttp.ClientResponseError as exc:
        cause = scrubbed(exc)
    assert cause.__traceback__ is None
    assert "sk-secret" not in repr(cause.request_info)  # type: ignore[attr-defined]
