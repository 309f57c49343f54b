"""Input checks: handles, video URLs, search queries, languages, limits.

Each returns the canonical value or raises an :class:`InvalidInputError` subclass, so bad
input is refused before a credit is reserved. Canonical handles and video URLs are also
the bulk helpers' de-duplication key: two spellings of one account or video cost one
request.
"""

from __future__ import annotations

import re

from .._errors import InvalidHandleError, InvalidInputError, InvalidVideoURLError

__all__ = [
    "check_language",
    "check_limit",
    "check_query",
    "normalize_handle",
    "normalize_video_url",
]

# Longer inputs cannot hold a valid handle or URL; refusing them early keeps hostile input
# cheap.
_MAX_INPUT = 2048
# TikTok usernames: 2-24 ASCII letters, digits, underscores and dots, not ending in a dot.
_HANDLE = re.compile(r"[a-z0-9_.]{1,23}[a-z0-9_]", re.ASCII)
# A profile URL: optional scheme, optional www./m., then tiktok.com/@name and any tail.
_PROFILE_URL = re.compile(
    r"(?:https?://)?(?:(?:www|m)\.)?tiktok\.com/@([^/?#]*)(?:[/?#].*)?",
    re.ASCII | re.IGNORECASE | re.DOTALL,
)


def normalize_handle(value: object) -> str:
    """Return the canonical handle for *value* or raise :class:`InvalidHandleError`.

    Accepts ``name``, ``@name``, ``NAME`` and profile URLs such as
    ``https://www.tiktok.com/@name/video/1?lang=en``.
    """
    if value.__class__ is str and _HANDLE.fullmatch(value) is not None:
        return value  # already canonical (the common case): one match, no copies
    if not isinstance(value, str):
        raise InvalidHandleError(
            f"a handle must be a string, not {type(value).__name__}", handle=None
        )
    if len(value) > _MAX_INPUT:
        raise InvalidHandleError(
            f"not a TikTok handle: input of {len(value)} characters", handle=None
        )
    text = value.strip()
    match = _PROFILE_URL.fullmatch(text)
    if match is not None:
        text = match.group(1)
    elif text.startswith("@"):
        text = text[1:]
    handle = text.lower()
    if _HANDLE.fullmatch(handle) is None:
        raise InvalidHandleError(
            f"not a TikTok handle: {value!r:.80} (2-24 of a-z, 0-9, '_' and '.', "
            "not ending in '.')",
            handle=None,
        )
    return handle


# A video or photo post: optional scheme, www./m., then /@user/video/<id> and any tail.
_VIDEO_URL = re.compile(
    r"(?:https?://)?(?:(?:www|m)\.)?tiktok\.com/@([a-z0-9_.]{2,24})/(video|photo)/(\d{5,25})"
    r"(?:[/?#].*)?",
    re.ASCII | re.IGNORECASE | re.DOTALL,
)
# A short link (vm./vt.tiktok.com/<code>), which the API resolves itself.
_SHORT_URL = re.compile(
    r"(?:https?://)?(vm|vt)\.tiktok\.com/([A-Za-z0-9]{5,20})/?(?:[?#].*)?",
    re.ASCII | re.IGNORECASE | re.DOTALL,
)
_LANGUAGE = re.compile(r"[a-z]{2}", re.ASCII)
_MAX_QUERY = 100


def normalize_video_url(value: object) -> str:
    """Return the canonical URL of a TikTok video or raise :class:`InvalidVideoURLError`.

    ``tiktok.com/@user/video/123?lang=en`` becomes ``https://www.tiktok.com/@user/video/123``;
    a ``vm.tiktok.com`` / ``vt.tiktok.com`` short link keeps its (case-sensitive) code.
    """
    if not isinstance(value, str):
        raise InvalidVideoURLError(f"a video URL must be a string, not {type(value).__name__}")
    if len(value) > _MAX_INPUT:
        raise InvalidVideoURLError(f"not a TikTok video URL: input of {len(value)} characters")
    text = value.strip()
    match = _VIDEO_URL.fullmatch(text)
    if match is not None:
        user, kind, video_id = match.groups()
        return f"https://www.tiktok.com/@{user.lower()}/{kind.lower()}/{video_id}"
    match = _SHORT_URL.fullmatch(text)
    if match is not None:
        host, code = match.groups()
        return f"https://{host.lower()}.tiktok.com/{code}/"
    raise InvalidVideoURLError(
        f"not a TikTok video URL: {value!r:.80} (expected https://www.tiktok.com/@user/video/ID "
        "or a vm.tiktok.com short link)"
    )


def check_query(value: object) -> str:
    """A search query: a non-empty single-line string of at most 100 characters."""
    if not isinstance(value, str):
        raise InvalidInputError(f"a search query must be a string, not {type(value).__name__}")
    text = " ".join(value.split())
    if not text:
        raise InvalidInputError("a search query must not be empty")
    if len(text) > _MAX_QUERY or not text.isprintable():
        raise InvalidInputError(
            f"not a search query: {value!r:.80} (printable, at most {_MAX_QUERY} characters)"
        )
    return text


def check_language(value: object) -> str:
    """An ISO 639-1 language code such as ``"en"``."""
    if not isinstance(value, str) or _LANGUAGE.fullmatch(value.strip().lower()) is None:
        raise InvalidInputError(f"preferred_language must be an ISO 639-1 code, got {value!r:.40}")
    return value.strip().lower()


def check_limit(value: object, name: str = "limit") -> int | None:
    """``None`` (no limit) or a non-negative int."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInputError(f"{name} must be None or an int >= 0, got {value!r:.40}")
    return value
