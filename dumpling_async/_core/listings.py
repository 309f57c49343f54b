"""The paged listings of the client: a profile's videos, a video's comments, followers,
following and user search. Each returns a :class:`Pager`; inputs are checked here, before
any credit is reserved.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from .._errors import InvalidInputError
from .._media import ProfileVideo, TikTokUserSummary, VideoComment
from .endpoints import COMMENTS, FOLLOWERS, FOLLOWING, PROFILE_VIDEOS, SEARCH_USERS
from .handles import normalize_handle
from .inputs import check_limit, check_query, normalize_video_url
from .paging import Pager, PageSpec, check_cursor

if TYPE_CHECKING:
    from .._client import AsyncDumplingClient

__all__ = ["ListingsMixin"]

# One line per listing: the vendor's item key, cursor in, cursor out.
VIDEOS_SPEC = PageSpec(
    PROFILE_VIDEOS,
    "aweme_list",
    ProfileVideo,
    cursor_param="maxCursor",
    cursor_key="max_cursor",
    cursor_as_str=True,
    count_param=None,
)
COMMENTS_SPEC = PageSpec(COMMENTS, "comments", VideoComment, "cursor", "cursor")
FOLLOWERS_SPEC = PageSpec(FOLLOWERS, "followers", TikTokUserSummary, "minTime", "minCursor")
FOLLOWING_SPEC = PageSpec(FOLLOWING, "followingList", TikTokUserSummary, "minTime", "minCursor")
SEARCH_SPEC = PageSpec(SEARCH_USERS, "userList", TikTokUserSummary, "cursor", "cursor")


def _page_size(value: object) -> int | None:
    size = check_limit(value, "page_size")
    if size == 0:
        raise InvalidInputError("page_size must be None or an int >= 1")
    return size


def _pager(
    client: AsyncDumplingClient,
    spec: PageSpec[Any],
    params: dict[str, Any],
    *,
    target: str,
    handle: str | None,
    limit: int | None,
    start_cursor: str | int | None,
    page_size: int | None,
) -> Pager[Any]:
    page, skip = check_cursor(spec, start_cursor)
    return Pager(
        client,
        spec,
        params,
        target=target,
        handle=handle,
        limit=check_limit(limit),
        start_cursor=page,
        start_skip=skip,
        page_size=_page_size(page_size),
    )


class ListingsMixin:
    """Paged listings; each call returns a lazy :class:`Pager` (no request until iterated)."""

    def iter_profile_videos(
        self,
        handle: str,
        *,
        limit: int | None = None,
        start_cursor: str | int | None = None,
        trim: bool = False,
    ) -> Pager[ProfileVideo]:
        """A profile's videos, newest first.

        ``trim=True`` asks the API to leave out the heavy ``video`` object of each item.
        """
        name = normalize_handle(handle)
        params: dict[str, Any] = {"handle": name}
        if trim:
            params["trim"] = True
        return _pager(
            cast("AsyncDumplingClient", self),
            VIDEOS_SPEC,
            params,
            target=name,
            handle=name,
            limit=limit,
            start_cursor=start_cursor,
            page_size=None,
        )

    def iter_video_comments(
        self,
        url: str,
        *,
        limit: int | None = None,
        start_cursor: str | int | None = None,
        page_size: int | None = None,
    ) -> Pager[VideoComment]:
        """A video's top-level comments (with the replies the API sends along)."""
        canonical = normalize_video_url(url)
        return _pager(
            cast("AsyncDumplingClient", self),
            COMMENTS_SPEC,
            {"url": canonical},
            target=canonical,
            handle=None,
            limit=limit,
            start_cursor=start_cursor,
            page_size=page_size,
        )

    def iter_followers(
        self,
        handle: str,
        *,
        limit: int | None = None,
        start_cursor: str | int | None = None,
        page_size: int | None = None,
    ) -> Pager[TikTokUserSummary]:
        """The accounts that follow *handle*, most recent first."""
        name = normalize_handle(handle)
        return _pager(
            cast("AsyncDumplingClient", self),
            FOLLOWERS_SPEC,
            {"handle": name},
            target=name,
            handle=name,
            limit=limit,
            start_cursor=start_cursor,
            page_size=page_size,
        )

    def iter_following(
        self,
        handle: str,
        *,
        limit: int | None = None,
        start_cursor: str | int | None = None,
        page_size: int | None = None,
    ) -> Pager[TikTokUserSummary]:
        """The accounts *handle* follows, most recent first."""
        name = normalize_handle(handle)
        return _pager(
            cast("AsyncDumplingClient", self),
            FOLLOWING_SPEC,
            {"handle": name},
            target=name,
            handle=name,
            limit=limit,
            start_cursor=start_cursor,
            page_size=page_size,
        )

    def search_users(
        self,
        query: str,
        *,
        limit: int | None = None,
        start_cursor: str | int | None = None,
        page_size: int | None = None,
    ) -> Pager[TikTokUserSummary]:
        """Accounts matching *query*, in the API's order of relevance."""
        text = check_query(query)
        return _pager(
            cast("AsyncDumplingClient", self),
            SEARCH_SPEC,
            {"query": text},
            target=text,
            handle=None,
            limit=limit,
            start_cursor=start_cursor,
            page_size=page_size,
        )
