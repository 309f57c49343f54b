"""RetryPolicy: which failures are retried, how long each wait is, and Retry-After parsing."""

from __future__ import annotations

import random

import pytest

from dumpling_async import APIConnectionError, RateLimitError, RetryPolicy, ServerError
from dumpling_async._core.retry import parse_retry_after


def _limited(retry_after: float | None) -> RateLimitError:
    return RateLimitError("slow down", status=429, retry_after=retry_after)


def test_defaults_and_validation() -> None:
    """Three attempts, 0.5 s base, 8 s cap, 60 s longest server wait; nonsense refused."""
    policy = RetryPolicy()
    assert (policy.max_attempts, policy.backoff_base, policy.backoff_max) == (3, 0.5, 8.0)
    assert policy.max_retry_after == 60.0
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="backoff_base"):
        RetryPolicy(backoff_base=-1)


def test_attempts_count_the_first_try() -> None:
    """max_attempts=3 allows retries after attempts 1 and 2, none after 3."""
    policy = RetryPolicy(max_attempts=3)
    error = ServerError("boom", status=500)
    assert policy.delay(error, 1) is not None
    assert policy.delay(error, 2) is not None
    assert policy.delay(error, 3) is None


def test_backoff_is_full_jitter_under_a_growing_cap() -> None:
    """Each wait is uniform in [0, min(max, base * 2**(n-1))]."""
    policy = RetryPolicy(backoff_base=0.5, backoff_max=2.0)
    rng = random.Random(1)
    for retry, ceiling in ((1, 0.5), (2, 1.0), (3, 2.0), (6, 2.0)):
        waits = [policy.backoff(retry, rng=rng) for _ in range(200)]
        assert min(waits) >= 0.0 and max(waits) <= ceiling
        assert max(waits) > ceiling * 0.8  # it does use the range


def test_server_waits_are_honoured_up_to_the_cap() -> None:
    """A Retry-After within max_retry_after is the wait; a longer one is not waited out."""
    policy = RetryPolicy(max_retry_after=5.0)
    assert policy.delay(_limited(3.0), 1) == 3.0
    assert policy.delay(_limited(30.0), 1) is None
    assert 0.0 <= (policy.delay(_limited(None), 1) or 0.0) <= 0.5


def test_only_retryable_failures_get_a_delay() -> None:
    """A 400-class answer or a transport failure after a 200 is never retried."""
    policy = RetryPolicy()
    assert policy.delay(RateLimitError("x", status=400), 1) is None
    assert policy.delay(APIConnectionError("cut", response_received=True), 1) is None
    assert policy.delay(APIConnectionError("reset", response_received=False), 1) is not None


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "2"}, 2.0),
        ({"retry-after": " 1.5 "}, 1.5),
        ({"retry-after": "-3"}, None),  # a negative wait is garbage, not "now"
        ({"retry-after-ms": "250", "retry-after": "1"}, 0.25),
        ({"retry-after-ms": "junk", "retry-after": "1"}, 1.0),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "inf"}, None),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT"}, 10.0),
        ({"retry-after": "Wed, 21 Oct 2015 07:27:00 GMT"}, 0.0),
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    """Seconds, milliseconds and HTTP dates are read; garbage is None, the past is 0."""
    now = 1445412480.0  # Wed, 21 Oct 2015 07:28:00 GMT
    assert parse_retry_after(headers, now=now) == expected
