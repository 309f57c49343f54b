"""Testing helpers shipped for users' own tests: ``FakeDumplingServer``, an in-process
DumplingAI server for offline tests, and its deterministic data.

It serves the vendor's TikTok endpoints (all ``POST /api/v1/<name>``, names in
``ENDPOINTS``) with deterministic data from the ``fake_*`` functions:

- ``get-tiktok-profile`` ``{handle}``: ``fake_profile(handle)``.
- ``get-tiktok-profile-videos`` ``{handle, maxCursor?, trim?}``: ``fake_profile_videos``,
  paged by ``maxCursor`` (the previous page's ``max_cursor``; ``has_more`` is 1 or 0).
- ``get-tiktok-video`` ``{url}``: ``fake_video(url)``.
- ``get-tiktok-video-comments`` ``{url, cursor?, count?}``: ``fake_comments``, paged by offset.
- ``get-tiktok-transcript`` ``{videoUrl, preferredLanguage?}``: ``fake_transcript`` (WebVTT).
- ``get-tiktok-user-followers`` / ``get-tiktok-user-following`` ``{handle, minTime?,
  count?}``: ``fake_followers`` / ``fake_following``, paged by follow time.
- ``search-tiktok-users`` ``{query, cursor?, count?}``: ``fake_search_users``, by offset.

All share bearer-key auth (401), credits (403 when below the endpoint's cost, 10 each
unless ``costs`` says otherwise), one per-key rate limit, 400 for a missing field or a bad
video URL, and injectable faults. It records what it was asked and what it charged, so
tests can assert on the server's own view::

    async with FakeDumplingServer(rate_limit=RateLimitRule(40, 0.5)) as server:
        async with AsyncDumplingClient("any-key", base_url=server.url) as client:
            await client.get_tiktok_profile("someone")
        assert server.charged["someone"] == 1

The rate limit (``RateLimitRule(limit, window, algorithm)``) runs one of ``ALGORITHMS``:
``fixed`` window, ``sliding`` log, ``sliding_counter`` (the weighted sliding window counter
of Cloudflare and the ``limits`` library), ``token_bucket`` or ``gcra``; the server's
``set_rate_limit`` changes the limit mid-run. The rule's keyword options copy other real
limiters: ``aligned`` windows (at multiples of the window in Unix time), a token bucket
with a ``refill`` below its size, a ``lockout`` after a denial until the reset, and a
``window_end_reset`` (the reset reported is the fixed window's end). By default every
response past the auth check carries ``X-RateLimit-Limit`` / ``X-RateLimit-Remaining``
and an exceeded limit answers 429 + ``Retry-After`` (and ``Retry-After-Ms``), as the
vendor documents. Options make it behave like other real APIs: ``reset_headers`` (one of
``RESET_HEADERS``) adds ``X-RateLimit-Reset`` in seconds (to the millisecond or whole) or
as a Unix time (in seconds or milliseconds), or sends the IETF ``RateLimit-*`` /
``RateLimit`` + ``RateLimit-Policy`` forms instead; ``retry_after_on_429=False`` sends
bare 429s, ``retry_after_rounding="down"`` rounds ``Retry-After`` down (0 for a wait under
a second), ``retry_after_always=True`` puts a meaningless ``Retry-After`` on the other
responses too; ``hostile_headers`` (one of ``HOSTILE_HEADERS``) sends hostile values
(``Limit: 0``, Remaining above Limit, a huge Limit, garbage, negative numbers) while the
real rule still applies; ``headers_hook(status, headers)`` rewrites each response's
rate-limit headers last. ``FakeDumplingServer``'s docstring has the exact formats.

A handle is unknown (404) when it is in ``unknown_handles`` or starts with ``unknown``; a
video when its id is in ``unknown_videos`` or its URL's user starts with ``unknown``.
Handles starting with ``empty`` have no videos, followers or followings; queries starting
with ``nobody`` find no one. 404s are never charged. Nor are injected faults: they model
requests the vendor did not complete (a client still counts a 200 it could not use as
spent, to stay on the safe side of a budget). The ``latency`` fault is a slow but normal,
charged answer. ``latency=`` slows every answer: a constant, or an ``AnswerTime`` (a
spread around a mean and a slow tail, drawn per request, ``latency_seed=`` for a
reproducible run); a request is counted against the rate limit before it waits.
"""

from ._data import (
    fake_comments,
    fake_followers,
    fake_following,
    fake_profile,
    fake_profile_videos,
    fake_search_users,
    fake_transcript,
    fake_transcript_cues,
    fake_video,
    fake_video_id,
)
from ._faults import FAULT_KINDS, SCRIPTED_ONLY, FaultPlan
from ._headers import GARBAGE_VALUES, HOSTILE_HEADERS, RESET_HEADERS
from ._latency import AnswerTime
from ._quota import ALGORITHMS, RateLimitRule
from ._record import RequestRecord
from ._requests import ENDPOINTS
from ._server import FakeDumplingServer

__all__ = [
    "ALGORITHMS",
    "ENDPOINTS",
    "FAULT_KINDS",
    "GARBAGE_VALUES",
    "HOSTILE_HEADERS",
    "RESET_HEADERS",
    "SCRIPTED_ONLY",
    "AnswerTime",
    "FakeDumplingServer",
    "FaultPlan",
    "RateLimitRule",
    "RequestRecord",
    "fake_comments",
    "fake_followers",
    "fake_following",
    "fake_profile",
    "fake_profile_videos",
    "fake_search_users",
    "fake_transcript",
    "fake_transcript_cues",
    "fake_video",
    "fake_video_id",
]
