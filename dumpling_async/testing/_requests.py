"""What the fake server accepts: each endpoint's body fields, checked as the vendor does."""

from __future__ import annotations

import re
import time
from typing import Any

import attrs

from ._data import parse_video_url

ENDPOINTS = (
    "get-tiktok-profile",
    "get-tiktok-profile-videos",
    "get-tiktok-video",
    "get-tiktok-video-comments",
    "get-tiktok-transcript",
    "get-tiktok-user-followers",
    "get-tiktok-user-following",
    "search-tiktok-users",
)
PROFILE, VIDEOS, VIDEO, COMMENTS, TRANSCRIPT, FOLLOWERS, FOLLOWING, SEARCH = ENDPOINTS
API_PREFIX = "/api/v1/"
PROFILE_PATH = API_PREFIX + PROFILE
# The body field naming what each endpoint is asked about, and the one holding its cursor.
_SUBJECT = {
    PROFILE: "handle",
    VIDEOS: "handle",
    VIDEO: "url",
    COMMENTS: "url",
    TRANSCRIPT: "videoUrl",
    FOLLOWERS: "handle",
    FOLLOWING: "handle",
    SEARCH: "query",
}
_CURSOR = {
    VIDEOS: "maxCursor",
    COMMENTS: "cursor",
    FOLLOWERS: "minTime",
    FOLLOWING: "minTime",
    SEARCH: "cursor",
}
BY_HANDLE = frozenset({PROFILE, VIDEOS, FOLLOWERS, FOLLOWING})
BY_VIDEO = frozenset({VIDEO, COMMENTS, TRANSCRIPT})
_COUNTED = frozenset({COMMENTS, FOLLOWERS, FOLLOWING, SEARCH})
MAX_COUNT = 50
REQUEST_SOURCES = frozenset(
    {"API", "WEB", "MAKE_DOT_COM", "ZAPIER", "N8N", "PLAYGROUND", "DEFAULT_AUTOMATION",
     "AGENT_PREVIEW", "AGENT_LIVE", "AUTOPILOT", "STUDIO"}
)  # fmt: skip
# At most a u64, so hostile cursors stay cheap to parse.
_DIGITS = re.compile(r"[0-9]{0,20}")


@attrs.frozen
class Seen:
    """What a request asked, for its record, and when it was read (before its answer
    time)."""

    endpoint: str
    subject: str | None = None
    cursor: str | None = None
    arrived: float = attrs.field(factory=time.monotonic)


@attrs.frozen
class Query:
    """A valid request body: *cursor* is the offset, maxCursor or minTime (0 = start)."""

    subject: str
    cursor: int = 0
    count: int | None = None
    trim: bool = False
    language: str = "en"


class BadRequest(Exception):
    """A body the vendor answers 400, with this message."""


def _whole(value: object) -> int | None:
    """*value* as an int when it is a whole JSON number (a bool is not)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _optional(body: dict[str, Any], field: str, kind: type, default: Any) -> Any:
    # null counts as absent, as it does for the vendor's JavaScript.
    value = body.get(field)
    if value is None:
        return default
    if not isinstance(value, kind):
        raise BadRequest(f"'{field}' must be a {kind.__name__}.")
    return value


def parse_body(endpoint: str, body: dict[str, Any]) -> Query:
    """Check *body* for *endpoint* as the vendor does; raise _BadRequest if it is bad."""
    field = _SUBJECT[endpoint]
    subject = body.get(field)
    if not isinstance(subject, str) or not subject:
        raise BadRequest(f"'{field}' parameter is required and must be a non-empty string.")
    if endpoint in BY_VIDEO and parse_video_url(subject) is None:
        raise BadRequest("Invalid TikTok video URL")
    source = body.get("requestSource")
    if source is not None and (not isinstance(source, str) or source not in REQUEST_SOURCES):
        raise BadRequest("'requestSource' must be one of: " + ", ".join(sorted(REQUEST_SOURCES)))
    cursor, name = 0, _CURSOR.get(endpoint)
    if name == "maxCursor":
        text = _optional(body, name, str, "")
        if not _DIGITS.fullmatch(text):
            raise BadRequest("'maxCursor' must be a string of digits.")
        cursor = int(text or "0")
    elif name is not None and body.get(name) is not None:
        whole = _whole(body[name])
        if whole is None or whole < 0:
            raise BadRequest(f"'{name}' must be a non-negative integer.")
        cursor = whole
    count = None
    if endpoint in _COUNTED and body.get("count") is not None:
        count = _whole(body["count"])
        if count is None or count < 1:
            raise BadRequest("'count' must be a positive integer.")
        count = min(count, MAX_COUNT)
    trim = _optional(body, "trim", bool, False) if endpoint == VIDEOS else False
    language = "en"
    if endpoint == TRANSCRIPT:
        language = _optional(body, "preferredLanguage", str, "en")
    return Query(subject, cursor, count, trim, language)


def seen_in(endpoint: str, body: dict[str, Any]) -> Seen:
    """The subject and cursor of *body* as sent, whatever their types."""
    subject = body.get(_SUBJECT[endpoint])
    name = _CURSOR.get(endpoint)
    cursor = body.get(name) if name is not None else None
    return Seen(
        endpoint,
        subject if isinstance(subject, str) else None,
        None if cursor is None else str(cursor),
    )
