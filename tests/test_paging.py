"""Pages and cursors: what a listing page means, and which start cursors are accepted."""

from __future__ import annotations

import orjson
import pytest

from dumpling_async import InvalidInputError, InvalidResponseError, TikTokUserSummary, VideoComment
from dumpling_async._core.endpoints import COMMENTS, FOLLOWERS, PROFILE_VIDEOS, SEARCH_USERS
from dumpling_async._core.paging import check_cursor, parse_page


def _page(endpoint_items_key: str, items: object, **rest: object) -> bytes:
    return orjson.dumps({endpoint_items_key: items, **rest})


def test_items_cursor_and_end_are_read_in_each_spelling() -> None:
    """Items are typed; the next cursor and the end come from each endpoint's own keys."""
    users = [{"user": {"uniqueId": f"u{i}"}} for i in range(3)]
    page = parse_page(FOLLOWERS, _page("followers", users, minCursor=1700, hasMore=True))
    assert [item.user.unique_id for item in page.items if item.user] == ["u0", "u1", "u2"]
    assert isinstance(page.items[0], TikTokUserSummary)
    assert (page.next_cursor, page.has_more) == ("1700", True)
    videos = parse_page(PROFILE_VIDEOS, _page("aweme_list", [], max_cursor=0, has_more=0))
    assert (videos.items, videos.has_more) == ((), False)


@pytest.mark.parametrize(
    ("flag", "more"),
    [
        (1, True),
        (0, False),
        (True, True),
        ("true", True),
        ("0", False),
        (None, False),
        (2.5, False),
    ],
)
def test_has_more_forms(flag: object, more: bool) -> None:
    """has_more as 0/1, a boolean or a string is understood; anything else means the end."""
    page = parse_page(SEARCH_USERS, _page("userList", [], cursor=10, has_more=flag))
    assert page.has_more is more


def test_an_error_in_a_200s_clothing_is_not_an_empty_last_page() -> None:
    """A 200 without the item list, or with TikTok's status_code set, raises with its detail."""
    with pytest.raises(InvalidResponseError, match="no 'comments'"):
        parse_page(COMMENTS, orjson.dumps({"cursor": 0}))
    with pytest.raises(InvalidResponseError, match="blocked"):
        parse_page(COMMENTS, _page("comments", [], status_code=5, status_msg="blocked"))
    with pytest.raises(InvalidResponseError, match="not a list"):
        parse_page(COMMENTS, _page("comments", {"cid": 1}))


def test_a_null_list_is_empty_and_odd_items_are_kept_untyped() -> None:
    """null items are an empty page; an odd item keeps its JSON; a non-object is dropped."""
    assert parse_page(COMMENTS, _page("comments", None)).items == ()
    page = parse_page(COMMENTS, _page("comments", [{"cid": {"x": 1}}, 7, {"cid": "2"}]))
    odd, normal = page.items
    assert isinstance(odd, VideoComment) and odd.cid is None and odd.raw == {"cid": {"x": 1}}
    assert normal.cid == "2" and page.dropped == 1


@pytest.mark.parametrize(
    ("endpoint", "cursor", "expected"),
    [
        (COMMENTS, None, (None, 0)),
        (COMMENTS, 20, ("20", 0)),
        (COMMENTS, "20#3", ("20", 3)),
        (COMMENTS, "#5", (None, 5)),
        (PROFILE_VIDEOS, "abc-token", ("abc-token", 0)),
    ],
)
def test_cursors_given_out_are_accepted(
    endpoint: object, cursor: object, expected: tuple[str | None, int]
) -> None:
    """Cursors a pager gave out, mid-page ones included, come back as (page, skip)."""
    assert check_cursor(endpoint.paging, cursor) == expected  # type: ignore[attr-defined]


@pytest.mark.parametrize("cursor", ["abc", "20#x", "20#-1", "20#99999", "1#2#3", "9" * 81, True])
def test_malformed_cursors_are_refused(cursor: object) -> None:
    """Anything a numeric listing never gave out is InvalidInputError, before any request."""
    assert COMMENTS.paging is not None
    with pytest.raises(InvalidInputError):
        check_cursor(COMMENTS.paging, cursor)
