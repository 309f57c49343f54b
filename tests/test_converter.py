"""The converter: JSON bodies become typed models or InvalidResponseError, never anything else."""

from __future__ import annotations

import contextlib
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dumpling_async import InvalidResponseError, TikTokProfile, TikTokVideo, VideoComment
from dumpling_async._core import converter
from dumpling_async._core.converter import parse_model, parse_profile, structure, structure_profile

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


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
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


def test_camel_case_keys_become_snake_case_fields_and_raw_keeps_the_rest() -> None:
    """Documented camelCase keys fill snake_case fields; unknown keys stay in raw."""
    data = {"user": {"uniqueId": "a", "isADVirtual": True, "brandNew": 1}, "extra": [1]}
    profile = structure_profile(data)
    assert profile.user is not None
    assert (profile.user.unique_id, profile.user.is_ad_virtual) == ("a", True)
    assert profile.user.raw["brandNew"] == 1 and profile.raw["extra"] == [1]


def test_lossless_coercions_only() -> None:
    """Numeric strings become ints, ids may be numbers, "true" is True; nothing lossy."""
    profile = structure_profile(
        {"user": {"id": 12, "createTime": "1700", "verified": "true"}, "stats": {"heart": 3.0}}
    )
    assert profile.user is not None and profile.stats is not None
    assert (profile.user.id, profile.user.create_time, profile.user.verified) == ("12", 1700, True)
    assert profile.stats.heart == 3
    assert structure_profile({"stats": {"heart": 3.5}}).stats.heart is None  # type: ignore[union-attr]


def test_type_drift_costs_the_field_not_the_paid_answer(caplog: pytest.LogCaptureFixture) -> None:
    """A documented field of an unexpected type becomes None (logged); the rest and raw stay."""
    body = {
        "user": {"uniqueId": "a", "verified": "maybe", "bioLink": "x", "eventList": 3},
        "stats": {"followerCount": "1.2M", "videoCount": 7},
    }
    with caplog.at_level("DEBUG", logger="dumpling_async"):
        profile = parse_profile(orjson.dumps(body))
    assert profile.user is not None and profile.stats is not None
    assert (profile.user.unique_id, profile.user.verified, profile.user.bio_link) == (
        "a",
        None,
        None,
    )
    assert profile.user.event_list == () and profile.user.raw["eventList"] == 3
    assert (profile.stats.follower_count, profile.stats.video_count) == (None, 7)
    assert profile.stats.raw["followerCount"] == "1.2M"
    dropped = {
        field
        for record in caplog.records
        if record.getMessage() == "response_fields_dropped"
        for field in record.fields  # type: ignore[attr-defined]
    }
    assert dropped == {"followerCount: str", "verified: str", "bioLink: str", "eventList: int"}


def test_a_profile_needs_its_user_object() -> None:
    """A 200 without a user object is not a profile: InvalidResponseError."""
    for body in ({}, {"user": "x"}, {"stats": {"videoCount": 1}}):
        with pytest.raises(InvalidResponseError, match="no 'user' object"):
            parse_profile(orjson.dumps(body))


def test_snake_case_endpoints_and_nested_model_lists() -> None:
    """Endpoints in TikTok's mobile shape keep snake_case keys; null lists are empty."""
    comment = structure(
        {"cid": "1", "reply_comment": [{"cid": "2", "text": "hi"}], "user": {"unique_id": "u"}},
        VideoComment,
    )
    assert comment.reply_comment[0].text == "hi"
    assert comment.user is not None and comment.user.unique_id == "u"
    assert structure({"cid": "1", "reply_comment": None}, VideoComment).reply_comment == ()


def test_parse_model_refuses_a_body_that_is_not_an_object() -> None:
    """A body that is not a JSON object raises InvalidResponseError (status 200, charged);
    the pipeline names the request on it (test_pipeline.py)."""
    with pytest.raises(InvalidResponseError) as caught:
        parse_model(TikTokVideo, b"[1, 2]")
    assert caught.value.status == 200 and caught.value.target is None
    assert "JSON object" in str(caught.value)


_SCALAR = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=5)
    | st.sampled_from(["12", "-3", "true", "False", " 7 ", "1.5", "x"])
)
_JSON = st.recursive(
    _SCALAR,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)


def _model_json(cls: type[Any], camel: bool, depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with *cls*'s JSON keys (some absent), each holding well-typed values,
    nested models or junk."""
    fields, _ = converter._model_fields(cls, camel=camel)
    values: dict[str, st.SearchStrategy[Any]] = {}
    for _, key, kind in fields:
        nested = [
            m
            for m in (*converter._CAMEL_CASE, *converter._SNAKE_CASE)
            if m in getattr(kind, "__args__", ())
        ]
        if nested and depth < 2:
            inner = _model_json(nested[0], nested[0] in converter._CAMEL_CASE, depth + 1)
            values[key] = inner | st.lists(inner, max_size=2) | _JSON
        else:
            values[key] = _JSON
    return st.fixed_dictionaries({}, optional=values)


@pytest.mark.parametrize(
    ("cls", "camel"),
    [(m, True) for m in converter._CAMEL_CASE] + [(m, False) for m in converter._SNAKE_CASE],
    ids=lambda v: getattr(v, "__name__", str(v)),
)
def test_generated_structure_matches_cattrs(cls: type[Any], camel: bool) -> None:
    """Each model's generated structure function builds what cattrs' own would, or
    fails where it fails (the lenient path then takes over for both)."""
    hooks: dict[Any, Any] = {}
    conv = converter._make_converter(hooks)
    fields, overrides = converter._model_fields(cls, camel=camel)
    generated = converter._compile(cls, fields, hooks)
    assert generated is not None, "every model has an inline form"
    generic = converter._generic(conv, cls, overrides)

    @settings(max_examples=150, deadline=None)
    @given(_model_json(cls, camel))
    def check(data: dict[str, Any]) -> None:
        try:
            expected = generic(data, cls)
        except Exception:
            failed = False
            try:
                generated(data, cls)
            except Exception:
                failed = True
            assert failed, "the generated function accepted what cattrs refuses"
            return
        assert generated(data, cls) == expected

    check()
