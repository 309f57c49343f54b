"""The body of each endpoint's normal answer: one page of the ``_data`` lists, or the
message of a 404."""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any

import orjson

from ._data import (
    fake_comments,
    fake_profile,
    fake_profile_videos,
    fake_search_users,
    fake_transcript,
    fake_video,
    parse_video_url,
    relation_entries,
)
from ._requests import (
    BY_HANDLE,
    BY_VIDEO,
    COMMENTS,
    FOLLOWERS,
    FOLLOWING,
    PROFILE,
    SEARCH,
    TRANSCRIPT,
    VIDEO,
    VIDEOS,
    Query,
)

__all__ = ["Answers"]

_MAX_CACHED_BODIES = 50_000


class Answers:
    """The server's answers; it keeps the profile bodies already built (the server's
    current unknown lists and page size are passed in on every request)."""

    def __init__(self) -> None:
        self._bodies: dict[str, bytes] = {}  # profile bodies, by handle

    def lookup(
        self,
        endpoint: str,
        query: Query,
        *,
        unknown_handles: Collection[str],
        unknown_videos: Collection[str],
        page_size: int,
    ) -> bytes | str:
        """The body of the normal answer, or the message of its 404."""
        subject = query.subject
        if endpoint in BY_HANDLE and (subject in unknown_handles or subject.startswith("unknown")):
            return f"TikTok profile not found for handle: {subject}"
        parsed = parse_video_url(subject) if endpoint in BY_VIDEO else None
        if parsed is not None and (parsed[1] in unknown_videos or parsed[0].startswith("unknown")):
            if endpoint == TRANSCRIPT:
                return "No subtitles found for this video"
            return f"TikTok video not found: {subject}"
        if endpoint == PROFILE:
            payload = self._bodies.get(subject)
            if payload is None:
                if len(self._bodies) > _MAX_CACHED_BODIES:
                    self._bodies.clear()
                payload = self._bodies[subject] = orjson.dumps(fake_profile(subject))
            return payload
        data = _payload(endpoint, query, page_size)
        return "No subtitles found for this video" if data is None else orjson.dumps(data)


def _videos_page(query: Query, page_size: int) -> dict[str, Any]:
    items = fake_profile_videos(query.subject)
    if query.cursor:  # the cursor is a time in ms: older items than the last page's
        items = [i for i in items if i["create_time"] * 1000 < query.cursor]
    page = items[:page_size]
    if query.trim:
        page = [{k: v for k, v in item.items() if k != "video"} for item in page]
    return {
        "status_code": 0,
        "aweme_list": page,
        "max_cursor": page[-1]["create_time"] * 1000 if page else 0,
        "min_cursor": page[0]["create_time"] * 1000 if page else 0,
        "has_more": int(len(items) > len(page)),  # the vendor's integer flag
        "extra": {"now": int(time.time() * 1000)},
    }


def _payload(endpoint: str, query: Query, page_size: int) -> dict[str, Any] | None:
    subject, cursor = query.subject, query.cursor
    size = query.count or page_size
    if endpoint == VIDEO:
        return fake_video(subject)
    if endpoint == TRANSCRIPT:
        return fake_transcript(subject, query.language)
    if endpoint == VIDEOS:
        return _videos_page(query, page_size)
    if endpoint in (FOLLOWERS, FOLLOWING):
        entries = relation_entries(subject, endpoint.rsplit("-", 1)[1])
        later = [(t, e) for t, e in entries if t < cursor] if cursor else entries
        head = later[:size]
        return {
            "followers" if endpoint == FOLLOWERS else "followingList": [e for _, e in head],
            "minCursor": head[-1][0] if head else 0,
            "maxCursor": head[0][0] if head else 0,
            "hasMore": len(later) > len(head),
            "total": len(entries),
        }
    found = fake_comments(subject) if endpoint == COMMENTS else fake_search_users(subject)
    page = found[cursor : cursor + size]
    after = cursor + len(page)
    if endpoint == SEARCH:
        return {"userList": page, "cursor": after, "hasMore": after < len(found)}
    return {
        "comments": page,
        "cursor": after,
        "hasMore": after < len(found),
        "total": len(found),
        "status_code": 0,
    }
