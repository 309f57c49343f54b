"""Property-based tests: structuring and error parsing never fail in an untyped way."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from dumpling_async import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    InsufficientCreditsError,
    InvalidResponseError,
    ProfileNotFoundError,
    RateLimitError,
    ServerError,
    TikTokProfile,
    UpstreamError,
)
from dumpling_async._core.converter import parse_profile, structure_profile
from dumpling_async._core.fate import error_for_status

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
USER_KEYS = st.sampled_from(
    [
        "id",
        "uniqueId",
        "nickname",
        "verified",
        "createTime",
        "bioLink",
        "eventList",
        "profileTab",
        "commerceUserInfo",
        "isADVirtual",
        "region",
        "unknownKey",
    ]
)
STATS_KEYS = st.sampled_from(["followerCount", "heart", "videoCount", "friendCount", "newStat"])


def _profile_like() -> st.SearchStrategy[dict[str, Any]]:
    user = st.dictionaries(USER_KEYS, JSON, max_size=8) | JSON
    stats = st.dictionaries(STATS_KEYS, JSON, max_size=5) | JSON
    items = st.lists(JSON, max_size=3) | JSON
    return st.fixed_dictionaries({}, optional={"user": user, "stats": stats, "itemList": items})


@settings(max_examples=300)
@given(_profile_like())
def test_structuring_gives_profile_or_invalid_response(data: dict[str, Any]) -> None:
    """Any JSON object gives a TikTokProfile or InvalidResponseError, nothing else."""
    try:
        profile = structure_profile(data)
    except InvalidResponseError:
        return
    assert isinstance(profile, TikTokProfile)
    assert profile.raw is data


@given(st.binary(max_size=200))
def test_any_body_bytes_give_profile_or_invalid_response(body: bytes) -> None:
    """Arbitrary 200 bodies never raise anything but InvalidResponseError."""
    with contextlib.suppress(InvalidResponseError):
        parse_profile(body)


def test_deeply_nested_and_huge_values() -> None:
    """Deep nesting and ints beyond 64 bits are handled without crashing."""
    deep: Any = {}
    for _ in range(200):
        deep = {"a": deep}
    profile = structure_profile({"user": {"uniqueId": "x", "deep": deep}})
    assert profile.user is not None and profile.user.unique_id == "x"
    body = b'{"stats": {"followerCount": 123456789012345678901234567890}}'
    with contextlib.suppress(InvalidResponseError):
        parse_profile(body)
    assert structure_profile({"stats": {"followerCount": 2**80}}).stats is not None


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
