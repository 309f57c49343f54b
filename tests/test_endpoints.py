"""Videos, transcripts, comments, followers, following and search against the fake server."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Callable
from typing import Any, NamedTuple

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from conftest import FAST_RETRY, KEY

from dumpling_async import (
    AsyncDumplingClient,
    AuthenticationError,
    BatchAbortedError,
    BudgetExceededError,
    ConfigurationError,
    CreditCosts,
    InvalidInputError,
    InvalidResponseError,
    InvalidVideoURLError,
    Pager,
    ProfileNotFoundError,
    ProfileVideo,
    ServerError,
    TikTokTranscript,
    TikTokUserSummary,
    TikTokVideo,
    TranscriptNotFoundError,
    VideoComment,
    VideoNotFoundError,
)
from dumpling_async.testing import (
    FakeDumplingServer,
    fake_comments,
    fake_followers,
    fake_following,
    fake_profile_videos,
    fake_search_users,
    fake_transcript,
    fake_transcript_cues,
    fake_video,
)

MakeClient = Callable[..., AsyncDumplingClient]
VIDEO_URL = "https://www.tiktok.com/@creator/video/7300000000000000123"


def _video_url(n: int) -> str:
    return f"https://www.tiktok.com/@creator/video/73000000000000{n:05d}"


def _with_subtitles(count: int) -> list[str]:
    """Video URLs the fake server has subtitles for."""
    urls = (_video_url(n) for n in range(1000))
    return [url for url in urls if fake_transcript(url, "en") is not None][:count]


def _without_subtitles() -> str:
    """A video URL the fake server has no subtitles for."""
    return next(u for u in map(_video_url, range(1000)) if fake_transcript(u, "en") is None)


class Listing(NamedTuple):
    """How to open a listing, its endpoint, the fake server's full list, the item type,
    and the attribute path that tells items apart."""

    method: str
    endpoint: str
    source: Callable[[str], list[dict[str, Any]]]
    item_type: type
    id_path: str


LISTINGS = {
    "videos": Listing(
        "iter_profile_videos",
        "get-tiktok-profile-videos",
        fake_profile_videos,
        ProfileVideo,
        "aweme_id",
    ),
    "comments": Listing(
        "iter_video_comments", "get-tiktok-video-comments", fake_comments, VideoComment, "cid"
    ),
    "followers": Listing(
        "iter_followers", "get-tiktok-user-followers", fake_followers, TikTokUserSummary, "user.id"
    ),
    "following": Listing(
        "iter_following", "get-tiktok-user-following", fake_following, TikTokUserSummary, "user.id"
    ),
    "search": Listing(
        "search_users", "search-tiktok-users", fake_search_users, TikTokUserSummary, "user.id"
    ),
}


# One nested field per listing, read from the typed item and from the server's JSON.
NESTED: dict[str, Callable[[Any], object]] = {
    "videos": lambda v: (v.statistics.play_count, v.author.unique_id, v.url),
    "comments": lambda c: (c.user.unique_id, [r.cid for r in c.reply_comment]),
    "followers": lambda u: (u.user.unique_id, u.stats.follower_count),
    "following": lambda u: (u.user.unique_id, u.stats.follower_count),
    "search": lambda u: (u.user.unique_id, u.stats.follower_count),
}
NESTED_RAW: dict[str, Callable[[dict[str, Any]], object]] = {
    "videos": lambda v: (v["statistics"]["play_count"], v["author"]["unique_id"], v["share_url"]),
    "comments": lambda c: (c["user"]["unique_id"], [r["cid"] for r in c["reply_comment"] or []]),
    "followers": lambda u: (u["user"]["uniqueId"], u["stats"]["followerCount"]),
    "following": lambda u: (u["user"]["uniqueId"], u["stats"]["followerCount"]),
    "search": lambda u: (u["user"]["uniqueId"], u["stats"]["followerCount"]),
}


def _subject(listing: str, size_at_least: int) -> str:
    """A subject whose fake list has at least *size_at_least* items."""
    _, _, source, _, _ = LISTINGS[listing]
    for n in range(2000):
        subject = _video_url(n) if listing == "comments" else f"creator{n}"
        if len(source(subject)) >= size_at_least:
            return subject
    raise AssertionError("no subject large enough")


def _item_id(item: Any, path: str) -> str:
    for part in path.split("."):
        item = getattr(item, part)
    return str(item)


def _raw_id(raw: dict[str, Any], path: str) -> str:
    for part in path.split("."):
        raw = raw[_camel(part)] if _camel(part) in raw else raw[part]
    return str(raw)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.capitalize() for p in rest)


def _open(client: AsyncDumplingClient, listing: str, subject: str, **kw: Any) -> Pager[Any]:
    pager: Pager[Any] = getattr(client, LISTINGS[listing][0])(subject, **kw)
    return pager


# -- single lookups -------------------------------------------------------------------------
async def test_video_is_typed(client: AsyncDumplingClient, server: FakeDumplingServer) -> None:
    """get_tiktok_video returns a typed video matching the server's JSON, charged once."""
    video = await client.get_tiktok_video(VIDEO_URL + "?lang=en")
    expected = fake_video(VIDEO_URL)
    assert expected is not None
    assert isinstance(video, TikTokVideo)
    assert video.id == expected["id"] and video.desc == expected["desc"]
    assert video.create_time_iso == expected["createTimeISO"]
    assert video.stats is not None
    assert video.stats.play_count == expected["stats"]["playCount"]
    assert video.stats.collect_count == expected["stats"]["collectCount"]
    assert video.author is not None and video.author.unique_id == expected["author"]["uniqueId"]
    assert video.music is not None and video.music.title == expected["music"]["title"]
    assert video.raw == expected
    assert [r.subject for r in server.requests_to("get-tiktok-video")] == [VIDEO_URL]
    assert client.credits_spent == server.credits_charged == 10


async def test_short_links_are_accepted_and_canonicalised(
    client: AsyncDumplingClient, server: FakeDumplingServer
) -> None:
    """A vm.tiktok.com short link is sent in its canonical https form for the API to resolve."""
    video = await client.get_tiktok_video("vm.tiktok.com/ZMabc123/")
    assert video.id is not None
    assert server.requests_to("get-tiktok-video")[0].subject == "https://vm.tiktok.com/ZMabc123/"


@pytest.mark.parametrize(
    "bad",
    [
        "https://www.tiktok.com/@creator",
        "https://evil.example/@creator/video/7300000000000000123",
        "javascript:alert(1)//tiktok.com/@a/video/12345",
        "https://www.tiktok.com/@creator/video/abc",
        "",
        None,
        "x" * 5000,
    ],
)
async def test_bad_video_urls_are_refused_before_any_request(
    client: AsyncDumplingClient, server: FakeDumplingServer, bad: Any
) -> None:
    """Anything but a TikTok video URL raises InvalidVideoURLError and sends nothing."""
    with pytest.raises(InvalidVideoURLError):
        await client.get_tiktok_video(bad)
    with pytest.raises(InvalidVideoURLError):
        await client.get_tiktok_transcript(bad)
    with pytest.raises(InvalidVideoURLError):
        client.iter_video_comments(bad)
    assert server.records == []


async def test_unknown_video_is_video_not_found(
    client: AsyncDumplingClient, server: FakeDumplingServer
) -> None:
    """A 404 from get-tiktok-video is VideoNotFoundError with the URL as target, uncharged."""
    url = "https://www.tiktok.com/@unknown_creator/video/7300000000000000999"
    with pytest.raises(VideoNotFoundError) as info:
        await client.get_tiktok_video(url)
    assert info.value.target == url and info.value.handle is None
    assert url in str(info.value)
    assert client.credits_spent == 0 and len(server.records) == 1


async def test_transcript_is_parsed_into_cues(
    client: AsyncDumplingClient, server: FakeDumplingServer
) -> None:
    """The WebVTT transcript is kept as sent and parsed into the server's cues."""
    url = _with_subtitles(1)[0]
    transcript = await client.get_tiktok_transcript(url, preferred_language="DE")
    expected = fake_transcript(url, "de")
    assert expected is not None
    assert isinstance(transcript, TikTokTranscript)
    assert transcript.transcript == expected["transcript"]
    assert transcript.language == expected["language"] == "de"
    assert transcript.original_url == url
    cues = [(c.start, c.end, c.text) for c in transcript.cues]
    assert cues == fake_transcript_cues(url, "de")
    assert any("\n" in c.text for c in transcript.cues)  # a two-line cue survived
    assert transcript.text.splitlines()[0] == transcript.cues[0].text.splitlines()[0]
    (record,) = server.requests_to("get-tiktok-transcript")
    assert record.subject == url


async def test_video_without_subtitles_is_transcript_not_found(
    client: AsyncDumplingClient, server: FakeDumplingServer
) -> None:
    """No subtitles is a TranscriptNotFoundError, not retried and not charged."""
    with pytest.raises(TranscriptNotFoundError):
        await client.get_tiktok_transcript(_without_subtitles())
    with pytest.raises(InvalidInputError):
        await client.get_tiktok_transcript(VIDEO_URL, preferred_language="english")
    assert client.credits_spent == 0 and len(server.records) == 1


async def test_concurrent_video_lookups_share_one_request(
    client: AsyncDumplingClient, server: FakeDumplingServer
) -> None:
    """Ten concurrent calls for one video (spelled differently) make one request."""
    spellings = [VIDEO_URL, VIDEO_URL + "?lang=en", VIDEO_URL.replace("www.", "")] * 3
    videos = await asyncio.gather(*(client.get_tiktok_video(u) for u in spellings))
    assert len({id(v) for v in videos}) == 1
    assert len(server.requests_to("get-tiktok-video")) == 1


# -- paged listings -------------------------------------------------------------------------
@pytest.mark.parametrize("listing", list(LISTINGS))
async def test_listing_pages_to_the_end(
    client: AsyncDumplingClient, server: FakeDumplingServer, listing: str
) -> None:
    """Each listing yields the server's whole list once, one request per page."""
    _, endpoint, source, item_type, id_path = LISTINGS[listing]
    subject = _subject(listing, 25)
    expected = source(subject)
    pager = _open(client, listing, subject)
    items = [item async for item in pager]
    assert all(isinstance(item, item_type) for item in items)
    assert [_item_id(i, id_path) for i in items] == [_raw_id(r, id_path) for r in expected]
    assert items[0].raw == expected[0]
    for item, raw in zip(items, expected, strict=True):  # nested objects are typed too
        assert NESTED[listing](item) == NESTED_RAW[listing](raw)
    pages = math.ceil(len(expected) / server.page_size)
    assert pager.pages == pages == len(server.requests_to(endpoint))
    assert pager.ended and pager.done and pager.cursor is None
    assert client.credits_spent == server.credits_charged == 10 * pages


@pytest.mark.parametrize("listing", list(LISTINGS))
async def test_listing_stops_at_limit_without_extra_requests(
    client: AsyncDumplingClient, server: FakeDumplingServer, listing: str
) -> None:
    """``limit`` caps the items, and no page beyond the one holding the last is requested."""
    _, endpoint, source, _, id_path = LISTINGS[listing]
    subject = _subject(listing, 25)
    expected = [_raw_id(r, id_path) for r in source(subject)]
    for limit, pages in ((server.page_size, 1), (server.page_size + 3, 2), (0, 0)):
        before = len(server.requests_to(endpoint))
        items = [item async for item in _open(client, listing, subject, limit=limit)]
        assert [_item_id(i, id_path) for i in items] == expected[:limit]
        assert len(server.requests_to(endpoint)) - before == pages


@pytest.mark.parametrize("listing", list(LISTINGS))
async def test_leaving_early_issues_no_further_request(
    client: AsyncDumplingClient, server: FakeDumplingServer, listing: str
) -> None:
    """Breaking out after the first item leaves the server with exactly one request."""
    _, endpoint, _, _, _ = LISTINGS[listing]
    pager = _open(client, listing, _subject(listing, 25))
    async for _ in pager:
        break
    await asyncio.sleep(0.05)  # nothing in the background either
    assert len(server.requests_to(endpoint)) == 1
    assert server.requests == 1


@pytest.mark.parametrize("listing", list(LISTINGS))
async def test_failed_page_can_be_resumed_from_its_cursor(
    make_client: MakeClient, server: FakeDumplingServer, listing: str
) -> None:
    """A page failing after retries raises with its cursor; resuming there loses nothing."""
    _, endpoint, source, _, id_path = LISTINGS[listing]
    client = make_client()
    subject = _subject(listing, 25)
    expected = [_raw_id(r, id_path) for r in source(subject)]
    pager = _open(client, listing, subject)
    seen = [_item_id(await anext(pager), id_path) for _ in range(server.page_size)]
    # The second page fails on every attempt.
    server.inject(*["500"] * FAST_RETRY.max_attempts, handle=server.records[-1].subject)
    with pytest.raises(ServerError) as info:
        await anext(pager)
    cursor = info.value.cursor
    assert cursor is not None and cursor == pager.cursor
    assert server.requests_to(endpoint)[-1].cursor == cursor
    resumed = _open(client, listing, subject, start_cursor=cursor)
    seen += [_item_id(item, id_path) async for item in resumed]
    assert seen == expected


async def test_video_pages_hide_the_integer_has_more(
    client: AsyncDumplingClient, server: FakeDumplingServer
) -> None:
    """The videos listing's ``has_more: 1/0`` and string ``maxCursor`` are handled."""
    subject = _subject("videos", 25)
    async for _ in client.iter_profile_videos(subject):
        pass
    records = server.requests_to("get-tiktok-profile-videos", subject)
    assert records[0].cursor is None
    assert all(r.cursor is not None and r.cursor.isdigit() for r in records[1:])


async def test_page_size_is_sent_as_count(
    client: AsyncDumplingClient, server: FakeDumplingServer
) -> None:
    """``page_size`` becomes the request's count, trimmed to what ``limit`` still needs."""
    subject = _subject("followers", 25)
    items = [u async for u in client.iter_followers(subject, page_size=7, limit=10)]
    assert len(items) == 10
    assert len(server.requests_to("get-tiktok-user-followers")) == 2


async def test_empty_listing_ends_after_one_request(
    client: AsyncDumplingClient, server: FakeDumplingServer
) -> None:
    """An account with no videos yields nothing and costs one page."""
    assert [v async for v in client.iter_profile_videos("empty_account")] == []
    assert [u async for u in client.search_users("nobody at all")] == []
    assert server.requests == 2


async def test_unknown_handle_listing_raises_profile_not_found(
    client: AsyncDumplingClient,
) -> None:
    """Listing an unknown account raises ProfileNotFoundError with the first page's cursor."""
    with pytest.raises(ProfileNotFoundError) as info:
        async for _ in client.iter_followers("unknown_person"):
            pass
    assert info.value.handle == "unknown_person" and info.value.cursor is None


async def test_listing_inputs_are_checked_before_any_request(
    client: AsyncDumplingClient, server: FakeDumplingServer
) -> None:
    """Bad handles, queries, limits and cursors are refused when the pager is made."""
    for make in (
        lambda: client.iter_followers("not a handle!"),
        lambda: client.search_users("   "),
        lambda: client.search_users("x" * 500),
        lambda: client.iter_following("alice", limit=-1),
        lambda: client.iter_video_comments(VIDEO_URL, page_size=0),
        lambda: client.iter_followers("alice", start_cursor="abc"),
    ):
        with pytest.raises(InvalidInputError):
            make()
    assert server.records == []


async def test_budget_stops_a_listing_with_its_cursor(make_client: MakeClient) -> None:
    """Running out of budget mid-listing raises BudgetExceededError with the next cursor."""
    client = make_client(max_credits=20)
    subject = _subject("comments", 25)
    pager = client.iter_video_comments(subject)
    seen = [await anext(pager) for _ in range(20)]  # two pages
    with pytest.raises(BudgetExceededError) as info:
        await anext(pager)
    assert len(seen) == 20 and client.credits_spent == 20
    assert info.value.cursor is not None


async def test_credit_costs_price_each_endpoint(serve: Callable[..., FakeDumplingServer]) -> None:
    """Configured costs are what the budget counts, matching what the server charged."""
    prices = {"get-tiktok-video": 7, "get-tiktok-transcript": 3, "search-tiktok-users": 2}
    server = serve(costs=prices)
    costs = CreditCosts(video=7, transcript=3, search_users=2)
    async with AsyncDumplingClient(
        KEY, base_url=server.url, retry=FAST_RETRY, credit_costs=costs
    ) as client:
        await client.get_tiktok_video(VIDEO_URL)
        await client.get_tiktok_transcript(_with_subtitles(1)[0])
        async for _ in client.search_users("creators", limit=1):
            pass
        assert client.credits_spent == server.credits_charged == 12
        assert client.credit_costs.transcript == 3
    with pytest.raises(ConfigurationError, match="video"):
        CreditCosts(video=-1)


async def test_stalled_pagination_stops(make_client: MakeClient) -> None:
    """A listing that says "more" but repeats its cursor ends instead of paying forever."""
    calls = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        body = {"userList": [{"user": {"id": str(calls)}}], "cursor": 5, "hasMore": True}
        return web.json_response(body)

    app = web.Application()
    app.router.add_post("/api/v1/search-tiktok-users", handler)
    async with TestServer(app, host="127.0.0.1") as stalled:
        client = make_client(base_url=str(stalled.make_url("")).rstrip("/"))
        items = [u async for u in client.search_users("loop")]
    assert calls == 2 and len(items) == 2


# -- bulk helpers ---------------------------------------------------------------------------
async def test_gather_videos_dedupes_and_keeps_order(
    client: AsyncDumplingClient, server: FakeDumplingServer
) -> None:
    """Spellings of one video cost one request; invalid input and 404s become results."""
    unknown = "https://www.tiktok.com/@unknown_x/video/7300000000000000555"
    inputs = [VIDEO_URL, "nope", VIDEO_URL.replace("https://www.", ""), _video_url(2), unknown]
    results = await client.gather_videos(inputs)
    assert [r.index for r in results] == list(range(5))
    assert results[0].ok and results[2].video is results[0].video
    assert results[2].url == VIDEO_URL
    assert isinstance(results[1].error, InvalidVideoURLError)
    assert isinstance(results[4].error, VideoNotFoundError)
    assert results[3].unwrap().id == _video_url(2).rsplit("/", 1)[1]
    assert len(server.requests_to("get-tiktok-video")) == 3
    assert client.credits_spent == 20


async def test_transcripts_in_bulk_honour_the_budget(make_client: MakeClient) -> None:
    """A credit budget lets exactly what it covers through; the rest are not attempted."""
    client = make_client(max_credits=30)
    urls = _with_subtitles(5)
    results = await client.gather_transcripts(urls + urls[:2], concurrency=4)
    ok = [r for r in results if r.ok]
    assert len({r.url for r in ok}) == 3
    over = [r for r in results if isinstance(r.error, BudgetExceededError)]
    assert len({r.url for r in over}) == 2
    assert client.credits_spent == 30
    assert all(r.transcript is None or r.transcript.cues for r in results)


async def test_iter_transcripts_reports_missing_subtitles(
    client: AsyncDumplingClient, server: FakeDumplingServer
) -> None:
    """Videos without subtitles end as TranscriptNotFoundError results, uncharged."""
    urls = [*_with_subtitles(2), _without_subtitles()]
    seen: list[Any] = []
    async with contextlib.aclosing(client.iter_transcripts(urls, on_result=seen.append)) as it:
        results = [r async for r in it]
    assert sorted(r.index for r in results) == [0, 1, 2] and len(seen) == 3
    missing = [r for r in results if not r.ok]
    assert len(missing) == 1 and isinstance(missing[0].error, TranscriptNotFoundError)
    assert client.credits_spent == server.credits_charged == 20


async def test_bulk_videos_abort_on_bad_key(serve: Callable[..., FakeDumplingServer]) -> None:
    """A 401 stops a video batch: the rest are BatchAbortedError, not requested."""
    server = serve(api_keys={"the-right-key"})
    async with AsyncDumplingClient(KEY, base_url=server.url, retry=FAST_RETRY) as client:
        results = await client.gather_videos([_video_url(n) for n in range(40)], concurrency=2)
    assert isinstance(results[0].error, AuthenticationError)
    aborted = [r for r in results if isinstance(r.error, BatchAbortedError)]
    assert aborted and all(r.error.target == r.url for r in aborted)  # type: ignore[union-attr]
    assert server.requests < 40


async def _aiter(items: list[str]) -> AsyncIterator[str]:
    for item in items:
        yield item


async def test_bulk_videos_accept_async_input(client: AsyncDumplingClient) -> None:
    """gather_videos reads an async iterable like gather_profiles does."""
    results = await client.gather_videos(_aiter([_video_url(n) for n in range(5)]))
    assert all(r.ok for r in results)


async def test_consumers_sharing_a_pager_buy_each_page_once(
    client: AsyncDumplingClient, server: FakeDumplingServer
) -> None:
    """Four tasks draining one pager get every item once and the server sees each page once."""
    subject = _subject("search", 25)
    pager = client.search_users(subject)

    async def drain() -> list[str]:
        return [str(u.user.id) async for u in pager if u.user is not None]

    parts = await asyncio.gather(*(drain() for _ in range(4)))
    got = sorted(i for part in parts for i in part)
    assert got == sorted(str(u["user"]["id"]) for u in fake_search_users(subject))
    cursors = [r.cursor for r in server.requests_to("search-tiktok-users")]
    assert len(cursors) == len(set(cursors)) == pager.pages


async def test_closing_mid_page_keeps_the_resume_cursor(
    client: AsyncDumplingClient, server: FakeDumplingServer
) -> None:
    """After aclose() or a limit mid-page, ``cursor`` resumes at the very next item."""
    subject = _subject("comments", 25)
    expected = [c["cid"] for c in fake_comments(subject)]
    pager = client.iter_video_comments(subject)
    first = [(await anext(pager)).cid for _ in range(server.page_size + 3)]  # into page two
    await pager.aclose()
    assert pager.done and not pager.ended
    with pytest.raises(StopAsyncIteration):
        await anext(pager)
    limited = client.iter_video_comments(subject, limit=server.page_size + 3)
    assert [c.cid async for c in limited] == first
    assert limited.done and not limited.ended and limited.cursor == pager.cursor
    assert pager.cursor == f"{pager.page_cursor}#3"  # three items into the second page
    rest = [c.cid async for c in client.iter_video_comments(subject, start_cursor=pager.cursor)]
    assert first + rest == expected  # nothing lost, nothing repeated
    with pytest.raises(InvalidInputError):
        client.iter_video_comments(subject, start_cursor="10#x")


async def _pages_server(pages: list[dict[str, Any]]) -> tuple[TestServer, list[Any]]:
    """A search endpoint answering *pages* in turn, recording each request body."""
    seen: list[Any] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(await request.json())
        return web.json_response(pages[min(len(seen), len(pages)) - 1])

    app = web.Application()
    app.router.add_post("/api/v1/search-tiktok-users", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server, seen


async def test_one_odd_item_does_not_cost_the_page(make_client: MakeClient) -> None:
    """An item with a wrong-typed field keeps every other field (that one is None, raw kept)."""
    page = {
        "userList": [
            {"user": {"id": "1", "uniqueId": "ok"}},
            {"user": {"id": "2", "uniqueId": "odd"}, "stats": {"followerCount": "1.2K"}},
            "not an object",
        ],
        "cursor": 3,
        "hasMore": False,
    }
    server, _ = await _pages_server([page])
    try:
        client = make_client(base_url=str(server.make_url("")).rstrip("/"))
        items = [u async for u in client.search_users("mixed")]
    finally:
        await server.close()
    assert [i.raw.get("user", {}).get("uniqueId") for i in items] == ["ok", "odd"]
    odd = items[1]
    assert odd.user is not None and odd.user.unique_id == "odd"
    assert odd.stats is not None and odd.stats.follower_count is None
    assert odd.raw["stats"] == {"followerCount": "1.2K"}


async def test_an_error_shaped_200_is_not_the_end(make_client: MakeClient) -> None:
    """A 200 without the items (an error in disguise) raises with the cursor to resume."""
    good = {"userList": [{"user": {"id": "1"}}], "cursor": 1, "hasMore": True}
    busy = {"status_code": 10201, "status_msg": "busy"}
    server, seen = await _pages_server([good, busy, good | {"hasMore": False}])
    try:
        client = make_client(base_url=str(server.make_url("")).rstrip("/"))
        pager = client.search_users("busy")
        with pytest.raises(InvalidResponseError, match="busy") as info:
            async for _ in pager:
                pass
        assert info.value.cursor == "1" and not pager.ended
        rest = [u async for u in client.search_users("busy", start_cursor=info.value.cursor)]
    finally:
        await server.close()
    assert len(rest) == 1 and seen[-1]["cursor"] == 1


async def test_a_failed_shared_page_is_bought_once(
    client: AsyncDumplingClient, server: FakeDumplingServer
) -> None:
    """When a page shared by four consumers fails, they all see the error; one request."""
    pager = client.search_users("shared failure")
    server.inject("html_200", handle="shared failure")
    outcomes = await asyncio.gather(*(anext(pager) for _ in range(4)), return_exceptions=True)
    assert all(isinstance(o, InvalidResponseError) for o in outcomes), outcomes
    assert len(server.requests_to("search-tiktok-users")) == 1
    assert client.credits_spent == 10


@pytest.mark.parametrize("listing", list(LISTINGS))
@pytest.mark.parametrize("taken", [3, 13])
async def test_resuming_from_a_limit_continues_at_the_next_item(
    client: AsyncDumplingClient, listing: str, taken: int
) -> None:
    """A pager stopped by ``limit`` mid-page resumes from its cursor with no gap or repeat."""
    _, _, source, _, id_path = LISTINGS[listing]
    subject = _subject(listing, 25)
    expected = [_raw_id(r, id_path) for r in source(subject)]
    head = _open(client, listing, subject, limit=taken)
    first = [_item_id(i, id_path) async for i in head]
    tail = _open(client, listing, subject, start_cursor=head.cursor)
    assert first + [_item_id(i, id_path) async for i in tail] == expected
