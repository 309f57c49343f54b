"""The fake server's TikTok endpoints beyond profiles: shapes, pages, errors, credits, faults."""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from conftest import KEY

from dumpling_async.testing import (
    ENDPOINTS,
    FakeDumplingServer,
    RateLimitRule,
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

VIDEO = "https://www.tiktok.com/@bob/video/7300000000000000001"
HEADERS = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers=HEADERS) as s:
        yield s


async def post(
    session: aiohttp.ClientSession, server: FakeDumplingServer, endpoint: str, body: object
) -> tuple[int, Any]:
    async with session.post(f"{server.url}/api/v1/{endpoint}", json=body) as response:
        return response.status, await response.json(content_type=None)


def _video_url(n: int, user: str = "bob") -> str:
    return f"https://www.tiktok.com/@{user}/video/{7_300_000_000_000_000_000 + n}"


def _first_url(predicate: Any) -> str:
    return next(url for url in map(_video_url, range(1000)) if predicate(url))


async def test_profile_videos_pages_cover_the_list(
    session: aiohttp.ClientSession, server: FakeDumplingServer
) -> None:
    """Following max_cursor walks the whole list once, has_more being an integer."""
    expected = fake_profile_videos("alice")
    seen: list[dict[str, Any]] = []
    body: dict[str, Any] = {"handle": "alice"}
    while True:
        status, page = await post(session, server, "get-tiktok-profile-videos", body)
        assert status == 200
        assert page["status_code"] == 0 and isinstance(page["extra"]["now"], int)
        assert type(page["has_more"]) is int and type(page["max_cursor"]) is int
        items = page["aweme_list"]
        assert len(items) <= server.page_size
        assert page["max_cursor"] == items[-1]["create_time"] * 1000
        assert page["min_cursor"] == items[0]["create_time"] * 1000
        seen += items
        if not page["has_more"]:
            break
        body = {"handle": "alice", "maxCursor": str(page["max_cursor"])}
    assert seen == expected and 5 <= len(expected) <= 50
    assert [i["create_time"] for i in seen] == sorted({i["create_time"] for i in seen})[::-1]
    first = expected[0]
    assert first["author"]["unique_id"] == "alice"
    assert first["share_url"] == f"https://www.tiktok.com/@alice/video/{first['aweme_id']}"
    assert set(first["statistics"]) == {
        "comment_count",
        "digg_count",
        "download_count",
        "play_count",
        "share_count",
    }
    status, trimmed = await post(
        session, server, "get-tiktok-profile-videos", {"handle": "alice", "trim": True}
    )
    assert "video" not in trimmed["aweme_list"][0] and "video" in first


async def test_profile_videos_empty_past_end_and_unknown(
    session: aiohttp.ClientSession, server: FakeDumplingServer
) -> None:
    """An "empty" handle has no videos, a cursor past the end gives none, "unknown" is 404."""
    status, page = await post(session, server, "get-tiktok-profile-videos", {"handle": "empty1"})
    assert (status, page["aweme_list"], page["has_more"]) == (200, [], 0)
    body = {"handle": "alice", "maxCursor": "1000"}
    status, page = await post(session, server, "get-tiktok-profile-videos", body)
    assert (status, page["aweme_list"], page["has_more"]) == (200, [], 0)
    status, error = await post(session, server, "get-tiktok-profile-videos", {"handle": "unknownx"})
    assert status == 404 and "unknownx" in error["error"]
    assert not server.charges[("get-tiktok-profile-videos", "unknownx")]


async def test_video_shape_and_url_spellings(
    session: aiohttp.ClientSession, server: FakeDumplingServer
) -> None:
    """Every accepted spelling of a video URL answers fake_video for the same id."""
    video = fake_video(VIDEO)
    assert video is not None
    assert {"id", "desc", "createTime", "createTimeISO", "video", "author", "music"} <= set(video)
    assert {"challenges", "stats", "textExtra", "duetEnabled", "stitchEnabled"} <= set(video)
    assert video["author"]["uniqueId"] == "bob"
    assert [t["hashtagName"] for t in video["textExtra"]] == [
        c["title"] for c in video["challenges"]
    ]
    for url in (
        VIDEO,
        "https://m.tiktok.com/@bob/video/7300000000000000001?lang=en#top",
        "https://tiktok.com/@bob/photo/7300000000000000001/",
    ):
        status, answer = await post(session, server, "get-tiktok-video", {"url": url})
        assert status == 200 and answer == fake_video(url)
        assert answer["id"] == fake_video_id(url) == "7300000000000000001"
    short = "https://vm.tiktok.com/ZMabc123/"
    status, answer = await post(session, server, "get-tiktok-video", {"url": short})
    assert status == 200 and answer["id"] == fake_video_id(short)
    assert re.fullmatch(r"\d{19}", answer["id"])
    # A profile's video item and the video endpoint agree on what the video is.
    item = fake_profile_videos("alice")[0]
    full = fake_video(item["share_url"])
    assert full is not None
    assert (full["createTime"], full["desc"]) == (item["create_time"], item["desc"])


REQUIRED = "parameter is required and must be a non-empty string."
BAD_URL = "Invalid TikTok video URL"


@pytest.mark.parametrize(
    ("endpoint", "body", "message"),
    [
        ("get-tiktok-profile-videos", {}, f"'handle' {REQUIRED}"),
        ("get-tiktok-profile-videos", {"handle": "al", "maxCursor": 5}, "'maxCursor' must"),
        ("get-tiktok-video", {"url": ""}, f"'url' {REQUIRED}"),
        ("get-tiktok-video", {"url": "https://evil.example/@bob/video/1"}, BAD_URL),
        ("get-tiktok-video-comments", {"url": "https://www.tiktok.com/@bob"}, BAD_URL),
        ("get-tiktok-video-comments", {"url": VIDEO, "count": "5"}, "'count' must"),
        ("get-tiktok-transcript", {"url": VIDEO}, f"'videoUrl' {REQUIRED}"),
        ("get-tiktok-transcript", {"videoUrl": "http://tiktok.com/@bob/video/1"}, BAD_URL),
        ("get-tiktok-user-followers", {"handle": 7}, f"'handle' {REQUIRED}"),
        ("get-tiktok-user-following", {"handle": "al", "minTime": -1}, "'minTime' must"),
        ("search-tiktok-users", {"query": ""}, f"'query' {REQUIRED}"),
        ("search-tiktok-users", {"query": "chef", "cursor": "0"}, "'cursor' must"),
    ],
)
async def test_bad_requests_are_400(
    session: aiohttp.ClientSession,
    server: FakeDumplingServer,
    endpoint: str,
    body: object,
    message: str,
) -> None:
    """A missing, empty or mistyped field or a bad URL is a 400 with the vendor's body."""
    status, error = await post(session, server, endpoint, body)
    assert status == 400 and error["error"].startswith(message)
    [record] = server.records
    assert (record.endpoint, record.status, record.credits) == (endpoint, 400, 0)
    assert server.credits_charged == 0


async def test_unknown_videos_are_404(session: aiohttp.ClientSession) -> None:
    """Videos in unknown_videos or by an "unknown" user are 404 on every video endpoint."""
    async with FakeDumplingServer(unknown_videos={"7300000000000000001"}) as server:
        gone = "https://www.tiktok.com/@unknown_bob/video/1"
        for endpoint, field in (
            ("get-tiktok-video", "url"),
            ("get-tiktok-video-comments", "url"),
            ("get-tiktok-transcript", "videoUrl"),
        ):
            for url in (VIDEO, gone):
                status, error = await post(session, server, endpoint, {field: url})
                assert status == 404 and error["error"], (endpoint, url)
        status, _ = await post(session, server, "get-tiktok-video", {"url": _video_url(2)})
        assert status == 200
    assert server.credits_charged == 10 and fake_video(gone) is None


async def test_comments_pages_by_offset(
    session: aiohttp.ClientSession, server: FakeDumplingServer
) -> None:
    """Offset cursors walk the comments once; count is capped at 50; past the end is empty."""
    url = _first_url(lambda u: len(fake_comments(u)) > 50)
    expected = fake_comments(url)
    status, page = await post(
        session, server, "get-tiktok-video-comments", {"url": url, "count": 500}
    )
    assert len(page["comments"]) == 50 and page["cursor"] == 50 and page["hasMore"] is True
    seen: list[dict[str, Any]] = []
    body: dict[str, Any] = {"url": url, "count": 7}
    while True:
        status, page = await post(session, server, "get-tiktok-video-comments", body)
        assert status == 200 and page["status_code"] == 0 and page["total"] == len(expected)
        seen += page["comments"]
        assert page["cursor"] == len(seen)
        if not page["hasMore"]:
            break
        body = {**body, "cursor": page["cursor"]}
    assert seen == expected
    comment = expected[0]
    assert {"cid", "text", "create_time", "digg_count", "reply_comment_total"} <= set(comment)
    assert set(comment["user"]) == {"uid", "unique_id", "nickname", "avatar_thumb"}
    replies = [c["reply_comment"] for c in expected if c["reply_comment"]]
    assert replies and all(1 <= len(r) <= 2 for r in replies)
    body = {"url": url, "cursor": len(expected) + 5}
    status, page = await post(session, server, "get-tiktok-video-comments", body)
    assert (page["comments"], page["hasMore"]) == ([], False)


def _parse_vtt(text: str) -> list[tuple[float, float, str]]:
    def seconds(stamp: str) -> float:
        h, m, s = stamp.split(":")
        return round(int(h) * 3600 + int(m) * 60 + float(s), 3)

    assert text.startswith("WEBVTT\n\n")
    cues = []
    for block in text[len("WEBVTT\n\n") :].strip("\n").split("\n\n"):
        _, timing, *lines = block.split("\n")
        start, end = timing.split(" --> ")
        cues.append((seconds(start), seconds(end), "\n".join(lines).replace("&amp;", "&")))
    return cues


async def test_transcript_and_missing_subtitles(
    session: aiohttp.ClientSession, server: FakeDumplingServer
) -> None:
    """The transcript is WebVTT matching fake_transcript_cues; no subtitles is a 404."""
    url = _first_url(lambda u: fake_transcript(u) is not None)
    body = {"videoUrl": url, "preferredLanguage": "de"}
    status, answer = await post(session, server, "get-tiktok-transcript", body)
    assert status == 200 and answer == fake_transcript(url, "de")
    assert (answer["language"], answer["id"], answer["originalUrl"]) == (
        "de",
        fake_video_id(url),
        url,
    )
    cues = fake_transcript_cues(url, "de")
    assert _parse_vtt(answer["transcript"]) == cues and 3 <= len(cues) <= 12
    assert "&amp;" in answer["transcript"] and any("\n" in text for _, _, text in cues)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(cues))
    body = {"videoUrl": url, "preferredLanguage": "xx"}
    status, answer = await post(session, server, "get-tiktok-transcript", body)
    assert answer["language"] == "en"
    for silent in (
        _first_url(lambda u: fake_transcript(u) is None),
        "https://www.tiktok.com/@nosubs_guy/video/123",
    ):
        status, error = await post(session, server, "get-tiktok-transcript", {"videoUrl": silent})
        assert (status, error) == (404, {"error": "No subtitles found for this video"})
    assert server.charges == Counter({("get-tiktok-transcript", url): 2})


@pytest.mark.parametrize(
    ("endpoint", "key", "truth"),
    [
        ("get-tiktok-user-followers", "followers", fake_followers),
        ("get-tiktok-user-following", "followingList", fake_following),
    ],
)
async def test_followers_pages_by_min_time(
    session: aiohttp.ClientSession,
    server: FakeDumplingServer,
    endpoint: str,
    key: str,
    truth: Any,
) -> None:
    """minTime paging walks each list once; unknown handles are 404, "empty" ones empty."""
    handle = next(h for h in (f"user{i}" for i in range(100)) if len(truth(h)) > 25)
    expected = truth(handle)
    seen: list[dict[str, Any]] = []
    body: dict[str, Any] = {"handle": handle, "count": 9}
    while True:
        status, page = await post(session, server, endpoint, body)
        assert status == 200 and page["total"] == len(expected)
        assert page["maxCursor"] >= page["minCursor"] > 0
        seen += page[key]
        if not page["hasMore"]:
            break
        body = {**body, "minTime": page["minCursor"]}
    assert page["hasMore"] is False and seen == expected
    assert fake_followers(handle) != fake_following(handle)
    entry = expected[0]
    assert re.fullmatch(r"[a-z0-9_.]{2,24}", entry["user"]["uniqueId"])
    assert entry["user"]["id"] == fake_profile(entry["user"]["uniqueId"])["user"]["id"]
    status, page = await post(session, server, endpoint, {"handle": "empty_one"})
    assert (status, page[key], page["hasMore"], page["total"]) == (200, [], False, 0)
    status, _ = await post(session, server, endpoint, {"handle": "unknown_one"})
    assert status == 404


async def test_search_users_pages(
    session: aiohttp.ClientSession, server: FakeDumplingServer
) -> None:
    """Search pages by offset over fake_search_users; a "nobody" query finds no one."""
    expected = fake_search_users("chef mike")
    assert 1 <= len(expected) <= 40 and expected[0]["user"]["uniqueId"] == "chefmike"
    seen: list[dict[str, Any]] = []
    body: dict[str, Any] = {"query": "chef mike"}
    while True:
        status, page = await post(session, server, "search-tiktok-users", body)
        assert status == 200 and len(page["userList"]) <= server.page_size
        seen += page["userList"]
        assert page["cursor"] == len(seen)
        if not page["hasMore"]:
            break
        body = {"query": "chef mike", "cursor": page["cursor"]}
    assert seen == expected
    assert set(expected[0]["stats"]) == {
        "followerCount",
        "followingCount",
        "heartCount",
        "videoCount",
        "diggCount",
    }
    status, page = await post(session, server, "search-tiktok-users", {"query": "nobody here"})
    assert (status, page) == (200, {"userList": [], "cursor": 0, "hasMore": False})


async def test_costs_are_charged_per_endpoint(session: aiohttp.ClientSession) -> None:
    """Each 200 charges its endpoint's cost; credits_charged and charges add them up."""
    costs = {"get-tiktok-video": 3, "get-tiktok-transcript": 25, "search-tiktok-users": 0}
    async with FakeDumplingServer(credits=1000, costs=costs) as server:
        assert server.costs["get-tiktok-profile"] == 10 and set(server.costs) == set(ENDPOINTS)
        transcript = _first_url(lambda u: fake_transcript(u) is not None)
        calls = [
            ("get-tiktok-profile", {"handle": "alice"}),
            ("get-tiktok-profile-videos", {"handle": "alice"}),
            ("get-tiktok-video", {"url": VIDEO}),
            ("get-tiktok-video", {"url": VIDEO}),
            ("get-tiktok-video-comments", {"url": VIDEO}),
            ("get-tiktok-transcript", {"videoUrl": transcript}),
            ("get-tiktok-user-followers", {"handle": "alice"}),
            ("get-tiktok-user-following", {"handle": "unknown_z"}),
            ("search-tiktok-users", {"query": "chef"}),
        ]
        for endpoint, body in calls:
            await post(session, server, endpoint, body)
    assert server.credits_charged == 10 + 10 + 3 + 3 + 10 + 25 + 10 + 0 == 71
    assert server.credits == 1000 - 71
    assert server.charges[("get-tiktok-video", VIDEO)] == 2
    assert server.charges[("search-tiktok-users", "chef")] == 1
    assert ("get-tiktok-user-following", "unknown_z") not in server.charges  # 404: free
    assert server.charged == Counter({"alice": 1})  # profile lookups only
    assert [r.credits for r in server.records] == [10, 10, 3, 3, 10, 25, 10, 0, 0]
    assert sum(r.credits for r in server.records) == server.credits_charged


async def test_credits_below_cost_are_403(session: aiohttp.ClientSession) -> None:
    """A request whose cost exceeds the remaining credits is refused with 403, not charged."""
    async with FakeDumplingServer(credits=15, costs={"get-tiktok-video": 20}) as server:
        status, _ = await post(session, server, "get-tiktok-video", {"url": VIDEO})
        assert status == 403
        status, _ = await post(session, server, "get-tiktok-profile-videos", {"handle": "a"})
        assert status == 200
        status, error = await post(session, server, "search-tiktok-users", {"query": "chef"})
        assert status == 403 and "credits" in error["error"].lower()
    assert server.credits == 5 and server.credits_charged == 10
    assert [r.status for r in server.records] == [403, 200, 403]


async def test_scripted_faults_on_other_endpoints(
    session: aiohttp.ClientSession, server: FakeDumplingServer
) -> None:
    """inject() matches a URL subject or an endpoint; faults are free and use that payload."""
    server.inject("500", "truncated_json", subject=VIDEO)
    server.inject("503", handle="alice", endpoint="get-tiktok-user-following")
    status, _ = await post(session, server, "get-tiktok-video-comments", {"url": VIDEO})
    assert status == 500
    url = f"{server.url}/api/v1/get-tiktok-video"
    async with session.post(url, json={"url": VIDEO}) as response:
        truncated = await response.read()
    assert response.status == 200
    full = await post(session, server, "get-tiktok-video", {"url": VIDEO})
    assert full[0] == 200 and full[1] == fake_video(VIDEO)
    normal = orjson.dumps(fake_video(VIDEO))
    assert truncated == normal[: len(normal) // 2]
    status, _ = await post(session, server, "get-tiktok-user-followers", {"handle": "alice"})
    assert status == 200  # the 503 waits for the following endpoint
    status, _ = await post(session, server, "get-tiktok-user-following", {"handle": "alice"})
    assert status == 503
    faults = [(r.endpoint, r.fault, r.credits) for r in server.records if r.fault]
    assert faults == [
        ("get-tiktok-video-comments", "500", 0),
        ("get-tiktok-video", "truncated_json", 0),
        ("get-tiktok-user-following", "503", 0),
    ]
    assert server.credits_charged == 20


async def test_records_carry_endpoint_subject_and_cursor(
    session: aiohttp.ClientSession, server: FakeDumplingServer
) -> None:
    """Records name the endpoint, the subject as sent, the cursor as a string and the handle."""
    await post(session, server, "get-tiktok-profile-videos", {"handle": "al", "maxCursor": "17"})
    await post(session, server, "get-tiktok-video-comments", {"url": VIDEO, "cursor": 20})
    await post(session, server, "get-tiktok-user-followers", {"handle": "al", "minTime": 99})
    await post(session, server, "search-tiktok-users", {"query": "Chef Mike"})
    await post(session, server, "get-tiktok-profile", {"handle": "al"})
    got = [(r.endpoint, r.subject, r.handle, r.cursor) for r in server.records]
    assert got == [
        ("get-tiktok-profile-videos", "al", "al", "17"),
        ("get-tiktok-video-comments", VIDEO, None, "20"),
        ("get-tiktok-user-followers", "al", "al", "99"),
        ("search-tiktok-users", "Chef Mike", None, None),
        ("get-tiktok-profile", "al", "al", None),
    ]
    assert len(server.requests_to("get-tiktok-video-comments")) == 1
    assert server.requests_to("get-tiktok-user-followers", "al")[0].credits == 10
    assert len(server.requests_for("al")) == 3


async def test_rate_limit_auth_and_redirect_span_endpoints(session: aiohttp.ClientSession) -> None:
    """One quota covers all endpoints; 401 and 429 records name the endpoint from the path."""
    async with FakeDumplingServer(rate_limit=RateLimitRule(2, 60.0)) as server:
        base = f"{server.url}/api/v1"
        async with session.post(f"{base}/get-tiktok-video", json={"url": VIDEO}) as response:
            assert response.headers["X-RateLimit-Remaining"] == "1"
        async with session.post(f"{base}/search-tiktok-users", json={"query": "a"}) as response:
            assert response.headers["X-RateLimit-Remaining"] == "0"
        transcript = f"{base}/get-tiktok-transcript"
        async with session.post(transcript, json={"videoUrl": VIDEO}) as response:
            assert response.status == 429 and "Retry-After" in response.headers
        async with (
            aiohttp.ClientSession() as anonymous,
            anonymous.post(f"{base}/get-tiktok-user-following", json={}) as response,
        ):
            assert response.status == 401
    async with (
        FakeDumplingServer(redirect_to="http://127.0.0.1:9") as moved,
        session.post(f"{moved.url}/api/v1/get-tiktok-video", allow_redirects=False) as response,
    ):
        assert response.headers["Location"] == "http://127.0.0.1:9/api/v1/get-tiktok-video"
    assert [(r.endpoint, r.status) for r in server.records[2:]] == [
        ("get-tiktok-transcript", 429),
        ("get-tiktok-user-following", 401),
    ]
    assert [(r.endpoint, r.status) for r in moved.records] == [("get-tiktok-video", 307)]


async def test_scripted_faults_can_skip_requests(server: FakeDumplingServer) -> None:
    """``skip=`` lets the first requests through, so a listing's second page fails."""
    server.inject("500", subject="cooks", endpoint="search-tiktok-users", skip=1)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as session:
        url = server.url + "/api/v1/search-tiktok-users"
        statuses = []
        for cursor in (0, 10, 20):
            async with session.post(url, json={"query": "cooks", "cursor": cursor}) as resp:
                statuses.append(resp.status)
    assert statuses == [200, 500, 200]
    with pytest.raises(ValueError, match="skip"):
        server.inject("500", skip=-1)
