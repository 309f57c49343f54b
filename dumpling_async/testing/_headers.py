"""The fake server's rate-limit headers: the forms real APIs send, and hostile values.

``rate_limit_headers`` renders one response's quota (limit, remaining, seconds until
reset, window) in one of the ``RESET_HEADERS`` forms, after replacing the values by one
of the ``HOSTILE_HEADERS`` when asked. ``retry_after_headers`` renders a wait, rounded up (the
common way) or down (``Math.floor`` in a Node handler, which can say 0).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import attrs

__all__ = [
    "GARBAGE_VALUES",
    "HOSTILE_HEADERS",
    "RESET_HEADERS",
    "HeadersHook",
    "Hostile",
    "Quota",
    "ResetHeaders",
    "RetryAfterRounding",
    "check_header_options",
    "is_rate_limit_header",
    "rate_limit_headers",
    "retry_after_headers",
]

ResetHeaders = Literal[
    "none", "x-seconds", "x-unix", "ietf", "ietf-structured", "x-unix-ms", "x-seconds-whole"
]
RESET_HEADERS: tuple[ResetHeaders, ...] = (
    "none",
    "x-seconds",
    "x-unix",
    "ietf",
    "ietf-structured",
    "x-unix-ms",
    "x-seconds-whole",
)
RetryAfterRounding = Literal["up", "down"]
_ROUNDINGS: tuple[RetryAfterRounding, ...] = ("up", "down")
Hostile = Literal["limit_zero", "remaining_over_limit", "huge_limit", "garbage", "negative"]
HOSTILE_HEADERS: tuple[Hostile, ...] = (
    "limit_zero",
    "remaining_over_limit",
    "huge_limit",
    "garbage",
    "negative",
)
# What "garbage" cycles through, one step per response.
GARBAGE_VALUES = ("abc", "-1", "1e309", "", "  12  x")
HUGE_LIMIT = 10**14
# (status, the response's rate-limit headers) -> the headers to send instead
HeadersHook = Callable[[int, dict[str, str]], dict[str, str]]
_RATE_PREFIXES = ("x-ratelimit", "ratelimit", "retry-after")


def check_header_options(
    reset_headers: str, hostile: str | None, retry_after_rounding: str = "up"
) -> None:
    """Raise ValueError for an unknown ``reset_headers``, ``hostile_headers`` or
    ``retry_after_rounding`` name."""
    if reset_headers not in RESET_HEADERS:
        raise ValueError(f"reset_headers must be one of {RESET_HEADERS}, got {reset_headers!r}")
    if hostile is not None and hostile not in HOSTILE_HEADERS:
        raise ValueError(f"hostile_headers must be one of {HOSTILE_HEADERS} or None: {hostile!r}")
    if retry_after_rounding not in _ROUNDINGS:
        raise ValueError(
            f"retry_after_rounding must be one of {_ROUNDINGS}, got {retry_after_rounding!r}"
        )


def is_rate_limit_header(name: str) -> bool:
    """``X-RateLimit-*``, ``RateLimit*`` and ``Retry-After*``: what a hook may rewrite."""
    return name.lower().startswith(_RATE_PREFIXES)


@attrs.frozen
class Quota:
    """One response's view of a key's quota: ``reset`` is seconds from now."""

    limit: int
    remaining: int
    reset: float
    window: float


@attrs.frozen
class _Texts:
    limit: str
    remaining: str
    reset: str


def _seconds(value: float) -> str:
    """A window length as text: ``2`` for 2.0, ``0.5`` for 0.5."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _reset_text(form: ResetHeaders, reset: float, wall: float) -> str:
    if form == "x-seconds":
        return f"{math.ceil(reset * 1000) / 1000:.3f}"  # rounded up to the millisecond
    if form == "x-unix":
        return str(math.ceil(wall + reset))
    if form == "x-unix-ms":
        return str(math.ceil((wall + reset) * 1000))
    return str(math.ceil(reset))  # x-seconds-whole, the IETF forms: delta seconds, rounded up


def _hostile(kind: Hostile | None, quota: Quota, texts: _Texts, seq: int) -> _Texts:
    if kind == "limit_zero":
        return attrs.evolve(texts, limit="0", remaining="0")
    if kind == "remaining_over_limit":
        return attrs.evolve(texts, remaining=str(quota.limit + 5))
    if kind == "huge_limit":
        used = max(0, quota.limit - quota.remaining)
        return attrs.evolve(texts, limit=str(HUGE_LIMIT), remaining=str(HUGE_LIMIT - used))
    if kind == "garbage":
        n = len(GARBAGE_VALUES)
        limit, remaining, reset = (GARBAGE_VALUES[(seq + i) % n] for i in range(3))
        return _Texts(limit, remaining, reset)
    if kind == "negative":
        return _Texts("-5", "-5", "-5")
    return texts


def rate_limit_headers(
    form: ResetHeaders,
    quota: Quota,
    *,
    hostile: Hostile | None = None,
    seq: int = 0,
    wall: float = 0.0,
) -> dict[str, str]:
    """The rate-limit headers of one response.

    ``none``: ``X-RateLimit-Limit`` and ``X-RateLimit-Remaining``; ``x-seconds``: those
    and ``X-RateLimit-Reset`` in seconds (3 decimals, rounded up); ``x-unix``: the same
    with ``X-RateLimit-Reset`` the Unix time *wall* + reset (whole seconds, rounded up);
    ``x-unix-ms``: the same in integer milliseconds, rounded up; ``x-seconds-whole``:
    ``X-RateLimit-Reset`` in delta seconds, whole, rounded up; ``ietf``:
    ``RateLimit-Limit``, ``RateLimit-Remaining``, ``RateLimit-Reset`` (whole seconds,
    rounded up) and ``RateLimit-Policy: L;w=W``; ``ietf-structured``:
    ``RateLimit: limit=L, remaining=R, reset=S`` (S as ``ietf``) and ``RateLimit-Policy``.
    *hostile* replaces the values; *seq* numbers the response (for ``garbage``).
    """
    texts = _Texts(str(quota.limit), str(quota.remaining), _reset_text(form, quota.reset, wall))
    texts = _hostile(hostile, quota, texts, seq)
    policy = f"{texts.limit};w={_seconds(quota.window)}"
    if form == "ietf":
        return {
            "RateLimit-Limit": texts.limit,
            "RateLimit-Remaining": texts.remaining,
            "RateLimit-Reset": texts.reset,
            "RateLimit-Policy": policy,
        }
    if form == "ietf-structured":
        value = f"limit={texts.limit}, remaining={texts.remaining}, reset={texts.reset}"
        return {"RateLimit": value, "RateLimit-Policy": policy}
    headers = {"X-RateLimit-Limit": texts.limit, "X-RateLimit-Remaining": texts.remaining}
    if form != "none":
        headers["X-RateLimit-Reset"] = texts.reset
    return headers


def retry_after_headers(
    seconds: float, *, ms: bool, rounding: RetryAfterRounding = "up"
) -> dict[str, str]:
    """``Retry-After`` in whole seconds, rounded up (at least 1) or with ``rounding="down"``
    down (0 for a wait under a second, as ``Math.floor`` in a Node handler gives), and
    with *ms* also ``Retry-After-Ms`` in milliseconds, rounded up (at least 1)."""
    whole = max(1, math.ceil(seconds)) if rounding == "up" else max(0, math.floor(seconds))
    headers = {"Retry-After": str(whole)}
    if ms:
        headers["Retry-After-Ms"] = str(max(1, math.ceil(seconds * 1000)))
    return headers
