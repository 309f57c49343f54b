"""Handle normalisation: one canonical form per TikTok account, checked before any request."""

from __future__ import annotations

import re

from .._errors import InvalidHandleError

__all__ = ["normalize_handle"]

# TikTok usernames: 2-24 ASCII letters, digits, underscores and dots, not ending in a dot.
_HANDLE = re.compile(r"[a-z0-9_.]{1,23}[a-z0-9_]", re.ASCII)
# A profile URL: optional scheme, optional www./m., then tiktok.com/@name and any tail.
_PROFILE_URL = re.compile(
    r"(?:https?://)?(?:(?:www|m)\.)?tiktok\.com/@([^/?#]*)(?:[/?#].*)?",
    re.ASCII | re.IGNORECASE | re.DOTALL,
)
# Longer inputs cannot hold a valid handle; refusing them early keeps hostile input cheap.
_MAX_INPUT = 2048


def normalize_handle(value: object) -> str:
    """Return the canonical handle for *value* or raise :class:`InvalidHandleError`.

    Accepts ``name``, ``@name``, ``NAME`` and profile URLs such as
    ``https://www.tiktok.com/@name/video/1?lang=en``.
    """
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
