"""Rate-limit information from response headers, in every form real APIs send it.

- ``X-RateLimit-Limit`` / ``X-RateLimit-Remaining`` (the vendor's), with
  ``X-RateLimit-Reset`` as seconds until the reset, a Unix timestamp (seconds or
  milliseconds) or, told apart by size;
- the IETF forms: ``RateLimit-Limit`` / ``RateLimit-Remaining`` / ``RateLimit-Reset``
  (delta seconds), the structured ``RateLimit: limit=10, remaining=3, reset=5`` and the
  newer ``RateLimit: "default";r=3;t=5``, with ``RateLimit-Policy: 10;w=60`` (or
  ``"default";q=10;w=60``) giving the window;
- ``Retry-After`` as seconds or an HTTP date, and ``Retry-After-Ms``.

Every value is untrusted: anything that is not a finite, non-negative number is ignored
(None), and numbers are bounded before the limiter sees them.
"""

from __future__ import annotations

import email.utils
import math
import re
import time
from collections.abc import Mapping

from .quota import MAX_LIMIT, ResponseInfo

__all__ = ["parse_rate_limit_headers", "parse_retry_after", "response_info"]

_MAX_SECONDS = 86_400.0 * 366  # a reset or a wait longer than a year is nonsense
_UNIX_SECONDS = 1e9  # a "reset" this large is a Unix timestamp (2001 onwards)
_UNIX_MS = 1e12
_NUMBER = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*")
_ITEM = re.compile(r"([A-Za-z]+)\s*=\s*\"?([^,;\s\"]*)\"?")


def _number(text: str | None) -> float | None:
    """A finite, non-negative decimal number, or None."""
    if text is None or len(text) > 40:
        return None
    match = _NUMBER.fullmatch(text)
    if match is None:
        return None
    value = float(match.group(1))
    return value if math.isfinite(value) else None


def _count(text: str | None) -> int | None:
    value = _number(text)
    if value is None or not value.is_integer():
        return None
    return int(min(value, MAX_LIMIT * 10))


def _fields(text: str | None) -> dict[str, str]:
    """``limit=10, remaining=3`` or ``"default";r=3;t=5`` as a dict (first value wins)."""
    found: dict[str, str] = {}
    if text is None or len(text) > 512:
        return found
    for key, value in _ITEM.findall(text):
        found.setdefault(key.lower(), value)
    return found


def _policy_window(headers: Mapping[str, str]) -> float | None:
    policy = headers.get("ratelimit-policy")
    if policy is None:
        return None
    window = _number(_fields(policy).get("w"))
    return window if window and window <= _MAX_SECONDS else None


def _reset_seconds(text: str | None, now: float) -> tuple[float | None, bool, bool]:
    """Seconds until the reset, whether the value was whole seconds (so up to 1 s early
    or late), and whether it was a time of day: delta seconds, or a Unix timestamp in
    seconds or milliseconds (a millisecond one is not whole seconds)."""
    value = _number(text)
    if value is None:
        return None, False, False
    rounded = value.is_integer() or (text is not None and "." not in text)
    absolute = value >= _UNIX_SECONDS
    if value >= _UNIX_MS:
        value, rounded = value / 1000.0 - now, False
    elif absolute:
        value = value - now
    if not 0 <= value <= _MAX_SECONDS:
        return None, False, False
    return value, rounded, absolute


def parse_rate_limit_headers(headers: Mapping[str, str]) -> tuple[int | None, int | None]:
    """Return (limit, remaining) from whichever form the server sends."""
    limit = _count(headers.get("x-ratelimit-limit"))
    remaining = _count(headers.get("x-ratelimit-remaining"))
    if limit is None and remaining is None:
        limit = _count(headers.get("ratelimit-limit"))
        remaining = _count(headers.get("ratelimit-remaining"))
    if limit is None and remaining is None:
        fields = _fields(headers.get("ratelimit"))
        policy = _fields(headers.get("ratelimit-policy"))
        limit = _count(fields.get("limit") or policy.get("q") or policy.get("limit"))
        remaining = _count(fields.get("remaining") or fields.get("r"))
    return limit, remaining


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds the server asks to wait: ``retry-after-ms``, or ``Retry-After`` as
    seconds or an HTTP date. None when absent or unparseable."""
    wait, _ = _retry_after(headers, time.time() if now is None else now)
    return wait


def _retry_after(headers: Mapping[str, str], now: float) -> tuple[float | None, bool]:
    """(seconds, whether they are whole seconds from ``Retry-After``)."""
    ms = _number(headers.get("retry-after-ms"))
    if ms is not None and ms / 1000.0 <= _MAX_SECONDS:
        return ms / 1000.0, False
    value = headers.get("retry-after")
    if value is None or len(value) > 64:
        return None, False
    seconds = _number(value)
    if seconds is not None:
        return (min(seconds, _MAX_SECONDS), seconds.is_integer())
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None, False
    if when is None:
        return None, False
    try:
        seconds = when.timestamp() - now
    except (OverflowError, OSError, ValueError):
        return None, False
    return min(max(0.0, seconds), _MAX_SECONDS), True


_NOTHING = ResponseInfo(status=200, limit=None, remaining=None)


def response_info(
    status: int, headers: Mapping[str, str], *, wall: float | None = None, sent_late: float = 0.0
) -> ResponseInfo:
    """What the limiter learns from one response (*wall*: the time of day to read Unix
    times against, now by default; *sent_late*: how long the request was held before it
    left while other requests left, ``ResponseInfo.sent_late``)."""
    get = headers.get
    if (
        status == 200
        and get("x-ratelimit-limit") is None
        and get("ratelimit") is None
        and get("ratelimit-limit") is None
        and get("ratelimit-policy") is None
    ):
        return _NOTHING  # a server that sends no limit: four lookups and done
    now = time.time() if wall is None else wall
    limit, remaining = parse_rate_limit_headers(headers)
    reset_text = get("x-ratelimit-reset") or get("ratelimit-reset")
    if reset_text is None:
        fields = _fields(get("ratelimit"))
        reset_text = fields.get("reset") or fields.get("t")
    reset, reset_rounded, absolute = _reset_seconds(reset_text, now)
    retry_after, rounded = (None, False)
    if status in (429, 503):  # on any other answer it means nothing
        retry_after, rounded = _retry_after(headers, now)
    return ResponseInfo(
        status=status,
        limit=limit,
        remaining=remaining,
        retry_after=retry_after,
        retry_after_rounded=rounded,
        reset=reset,
        reset_rounded=reset_rounded,
        window=_policy_window(headers),
        reset_absolute=absolute,
        sent_late=sent_late,
    )
