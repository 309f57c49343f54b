"""Deterministic data for :class:`~dumpling_async.testing.FakeDumplingServer`.

Every value derives from sha256 of the input (a handle, a video id, a query), so a test can
call these functions to learn exactly what the fake server will answer. A video's own
fields derive from its id alone: the item a profile's video list shows and the answer of
``fake_video`` for its ``share_url`` agree.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "TRANSCRIPT_LANGUAGES",
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
    "parse_video_url",
    "relation_entries",
]

TRANSCRIPT_LANGUAGES = ("en", "es", "de", "fr")
_CDN = "https://p16-sign-va.tiktokcdn.com"
_VIDEO_CDN = "https://v16-webapp-prime.tiktok.com/video"
# Bounded lengths keep hostile input cheap (int() of a huge digit string is slow or refused).
_VIDEO_URL = re.compile(
    r"https://(?:(?:www|m)\.)?tiktok\.com/@([a-z0-9_.]{1,64})/(?:video|photo)/(\d{1,25})"
    r"/?(?:[?#].*)?",
    re.ASCII | re.IGNORECASE | re.DOTALL,
)
_SHORT_URL = re.compile(
    r"https://(?:vm|vt)\.tiktok\.com/([a-z0-9]{1,32})/?(?:[?#].*)?",
    re.ASCII | re.IGNORECASE | re.DOTALL,
)
_ADJECTIVES = ("sunny", "chef", "lofi", "pixel", "maple", "urban", "retro", "cozy", "wild", "neon")
_NOUNS = ("cat", "kitchen", "beats", "travels", "studio", "garden", "gamer", "crafts", "vibes")
_TAGS = ("fyp", "cooking", "travel", "dance", "comedy", "diy", "pets", "music", "art", "tips")
_CAPTIONS = (
    "Wait for the end",
    "POV: you finally tried it",
    "Day 3 of learning this",
    "Nobody talks about this",
    "Quick one today",
    "Part 2, as promised",
    "Saving this for later",
    "Tell me I'm not the only one",
)
_REMARKS = (
    "this is so good 🔥",
    "how did I only find this now",
    "the ending though",
    "need a part 2",
    "saving this",
    "first!",
    "I tried it and it worked",
    "who's here in 2024?",
)
_LINES = {
    "en": ("hey everyone, welcome back", "today we're trying something new", "salt", "pepper",
           "this part is important", "don't forget to follow", "let's get started",
           "and that's it"),
    "es": ("hola a todos", "hoy probamos algo nuevo", "sal", "pimienta", "esto es importante",
           "no olvides seguirme", "empecemos", "y eso es todo"),
    "de": ("hallo zusammen", "heute probieren wir was neues", "Salz", "Pfeffer",
           "das ist wichtig", "vergiss nicht zu folgen", "los geht's", "und das war's"),
    "fr": ("salut tout le monde", "aujourd'hui on essaie un truc", "sel", "poivre",
           "c'est important", "abonnez-vous", "c'est parti", "et voilà"),
}  # fmt: skip


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def _int(d: bytes, start: int = 0) -> int:
    return int.from_bytes(d[start : start + 8], "big")


def fake_profile(handle: str) -> dict[str, Any]:
    """The deterministic profile the fake server returns for *handle*."""
    d = _digest(handle)
    n = int.from_bytes(d[:8], "big")
    followers = n % 50_000_000
    cdn = f"{_CDN}/{d.hex()[:24]}"
    return {
        "user": {
            "id": str(6_600_000_000_000_000_000 + n % 10**17),
            "shortId": "",
            "uniqueId": handle,
            "nickname": handle.replace("_", " ").replace(".", " ").title(),
            "avatarLarger": f"{cdn}~c5_1080x1080.jpeg",
            "avatarMedium": f"{cdn}~c5_720x720.jpeg",
            "avatarThumb": f"{cdn}~c5_100x100.jpeg",
            "signature": f"Creator #{n % 9973}. Fake profile for offline tests.",
            "createTime": 1_450_000_000 + n % 300_000_000,
            "verified": d[8] % 7 == 0,
            "secUid": "MS4wLjABAAAA" + d.hex()[:52],
            "ftc": False,
            "relation": 0,
            "openFavorite": d[9] % 2 == 0,
            "bioLink": {"link": f"https://example.com/{handle}", "risk": 0},
            "commentSetting": 0,
            "commerceUserInfo": {"commerceUser": d[10] % 5 == 0},
            "duetSetting": 0,
            "stitchSetting": 0,
            "privateAccount": d[11] % 11 == 0,
            "secret": False,
            "isADVirtual": False,
            "roomId": "",
            "uniqueIdModifyTime": 0,
            "ttSeller": False,
            "region": ("US", "GB", "DE", "FR", "BR", "JP", "IN", "MX")[d[12] % 8],
            "downloadSetting": 0,
            "profileTab": {
                "showMusicTab": False,
                "showQuestionTab": d[13] % 2 == 0,
                "showPlayListTab": True,
            },
            "followingVisibility": 1,
            "recommendReason": "",
            "nowInvitationCardUrl": "",
            "nickNameModifyTime": 0,
            "isEmbedBanned": False,
            "canExpPlaylist": True,
            "profileEmbedPermission": 1,
            "language": ("en", "es", "de", "fr", "pt", "ja")[d[14] % 6],
            "eventList": [],
            "suggestAccountBind": False,
            "isOrganization": 0,
        },
        "stats": {
            "followerCount": followers,
            "followingCount": n % 2000,
            "heart": followers * 40,
            "heartCount": followers * 40,
            "videoCount": n % 3000,
            "diggCount": 0,
            "friendCount": n % 500,
        },
        "itemList": [],
    }


def _fake_handle(d: bytes, stem: str = "") -> str:
    """A valid handle (2-24 of a-z0-9_., ending in a digit) from *d*, starting with *stem*."""
    first = stem or _ADJECTIVES[d[0] % len(_ADJECTIVES)]
    return f"{first}{('', '_', '.')[d[1] % 3]}{_NOUNS[d[2] % len(_NOUNS)]}{_int(d, 3) % 1000}"


def _user_entry(handle: str) -> dict[str, Any]:
    """A followers/search list entry: *handle*'s fake_profile, cut to what lists carry."""
    profile = fake_profile(handle)
    user, stats = profile["user"], profile["stats"]
    keys = ("id", "uniqueId", "nickname", "secUid", "avatarThumb", "verified", "signature")
    counts = ("followerCount", "followingCount", "heartCount", "videoCount", "diggCount")
    return {"user": {k: user[k] for k in keys}, "stats": {k: stats[k] for k in counts}}


def _video_id(created: int, d: bytes) -> str:
    # Like TikTok's: the creation time in the high bits, so ids are 19 digits and sortable.
    return str((created << 32) | (_int(d, 24) & 0xFFFFFFFF))


def _created(video_id: str) -> int:
    """A video's creation time: from its id's high bits when they hold one, else its digest."""
    high = int(video_id) >> 32
    if 1_400_000_000 <= high <= 2_000_000_000:
        return high
    return 1_500_000_000 + _int(_digest(video_id), 8) % 200_000_000


def _video_core(video_id: str) -> dict[str, Any]:
    """What a video is, from its id alone: caption, hashtags, counts, media URLs."""
    d = _digest(video_id)
    tags = list(dict.fromkeys(_TAGS[b % len(_TAGS)] for b in d[: 1 + d[1] % 3]))
    caption = _CAPTIONS[d[4] % len(_CAPTIONS)]
    desc = " ".join([caption, *(f"#{t}" for t in tags)])
    plays = _int(d, 16) % 20_000_000
    return {
        "desc": desc,
        "tags": tags,
        "created": _created(video_id),
        "duration": 5 + d[5] % 176,
        "cover": f"{_CDN}/obj/{d.hex()[:32]}~tplv-photomode-zoomcover.jpeg",
        "play": f"{_VIDEO_CDN}/{d.hex()[:40]}/video.mp4",
        "plays": plays,
        "diggs": plays // (5 + d[6] % 20),
        "comments": plays // (100 + d[7] % 400),
        "shares": plays // (200 + d[8] % 800),
        "saves": plays // (150 + d[9] % 600),
        "downloads": plays // (500 + d[10] % 2000),
    }


def fake_profile_videos(handle: str) -> list[dict[str, Any]]:
    """*handle*'s videos, newest first (``aweme`` items, snake_case keys).

    None when *handle* starts with ``empty``, else 5 + sha256(handle + "/videos") % 46.
    """
    if handle.startswith("empty"):
        return []
    d = _digest(f"{handle}/videos")
    user = fake_profile(handle)["user"]
    author = {
        "uid": user["id"],
        "unique_id": handle,
        "nickname": user["nickname"],
        "sec_uid": user["secUid"],
    }
    created = 1_700_000_000 + _int(d, 8) % 30_000_000
    items = []
    for i in range(5 + _int(d) % 46):
        e = _digest(f"{handle}/videos/{i}")
        created -= 600 + _int(e) % 400_000  # strictly decreasing
        aweme_id = _video_id(created, e)
        core = _video_core(aweme_id)
        items.append(
            {
                "aweme_id": aweme_id,
                "desc": core["desc"],
                "create_time": created,
                "statistics": {
                    "comment_count": core["comments"],
                    "digg_count": core["diggs"],
                    "download_count": core["downloads"],
                    "play_count": core["plays"],
                    "share_count": core["shares"],
                },
                "video": {
                    "duration": core["duration"],
                    "cover": core["cover"],
                    "play_addr": {"url_list": [core["play"]]},
                },
                "author": author,
                "share_url": f"https://www.tiktok.com/@{handle}/video/{aweme_id}",
            }
        )
    return items


def parse_video_url(url: str) -> tuple[str, str] | None:
    """``(author handle, video id)`` of a video URL, or None when it is not one.

    A ``vm.``/``vt.tiktok.com`` short link resolves to an id and author derived from
    sha256 of its code.
    """
    match = _VIDEO_URL.fullmatch(url)
    if match is not None:
        return match[1], match[2]
    match = _SHORT_URL.fullmatch(url)
    if match is None:
        return None
    d = _digest(f"short/{match[1]}")
    return _fake_handle(d[8:]), _video_id(1_600_000_000 + _int(d) % 130_000_000, d)


def fake_video_id(url: str) -> str | None:
    """The video id *url* resolves to, or None when it is not a TikTok video URL."""
    parsed = parse_video_url(url)
    return None if parsed is None else parsed[1]


def _parsed(url: str) -> tuple[str, str]:
    parsed = parse_video_url(url)
    if parsed is None:
        raise ValueError(f"not a TikTok video URL: {url!r:.80}")
    return parsed


def fake_video(url: str) -> dict[str, Any] | None:
    """The video at *url* (camelCase keys), or None (404) when its author starts with
    ``unknown``. Raises ValueError for a URL the server answers 400."""
    author, video_id = _parsed(url)
    if author.startswith("unknown"):
        return None
    core = _video_core(video_id)
    user = fake_profile(author)["user"]
    d = _digest(f"{video_id}/music")
    tag_ids = {t: str(1_600_000 + _int(_digest(f"tag/{t}")) % 10**9) for t in core["tags"]}
    text_extra = []
    for tag in core["tags"]:
        start = core["desc"].index(f"#{tag}")
        text_extra.append(
            {
                "hashtagName": tag,
                "hashtagId": tag_ids[tag],
                "type": 1,
                "start": start,
                "end": start + len(tag) + 1,
            }
        )
    return {
        "id": video_id,
        "desc": core["desc"],
        "createTime": core["created"],
        "createTimeISO": datetime.fromtimestamp(core["created"], UTC).isoformat(),
        "video": {
            "id": video_id,
            "height": 1024,
            "width": 576,
            "duration": core["duration"],
            "ratio": "540p",
            "format": "mp4",
            "cover": core["cover"],
            "playAddr": core["play"],
            "downloadAddr": core["play"] + "?download=1",
        },
        "author": {
            "id": user["id"],
            "uniqueId": author,
            "nickname": user["nickname"],
            "signature": user["signature"],
            "verified": user["verified"],
            "secUid": user["secUid"],
            "avatarThumb": user["avatarThumb"],
        },
        "music": {
            "id": str(7_000_000_000_000_000_000 + _int(d) % 10**18),
            "title": f"original sound - {author}" if d[8] % 2 else "Trending Beat",
            "authorName": author if d[8] % 2 else "Studio Loops",
            "duration": core["duration"],
        },
        "challenges": [{"id": tag_ids[t], "title": t} for t in core["tags"]],
        "stats": {
            "diggCount": core["diggs"],
            "shareCount": core["shares"],
            "commentCount": core["comments"],
            "playCount": core["plays"],
            "collectCount": core["saves"],
        },
        "textExtra": text_extra,
        "duetEnabled": d[9] % 3 != 0,
        "stitchEnabled": d[10] % 3 != 0,
    }


def _comment(key: str, after: int, *, replies: bool) -> dict[str, Any]:
    e = _digest(key)
    handle = _fake_handle(e[16:])
    user = fake_profile(handle)["user"]
    created = after + 60 + _int(e) % 3_000_000
    n_replies = e[8] % 3 if replies else 0
    reply = [_comment(f"{key}/{j}", created, replies=False) for j in range(n_replies)]
    return {
        "cid": _video_id(created, e),
        "text": _REMARKS[e[9] % len(_REMARKS)],
        "create_time": created,
        "digg_count": _int(e, 10) % 50_000,
        "reply_comment_total": n_replies + e[11] % 30 if n_replies else 0,
        "user": {
            "uid": user["id"],
            "unique_id": handle,
            "nickname": user["nickname"],
            "avatar_thumb": {"url_list": [user["avatarThumb"]]},
        },
        "reply_comment": reply or None,
    }


def fake_comments(url: str) -> list[dict[str, Any]]:
    """The comments of the video *url* resolves to (snake_case keys): sha256(id +
    "/comments") % 61 of them. Raises ValueError for a URL the server answers 400."""
    _, video_id = _parsed(url)
    created = _created(video_id)
    count = _int(_digest(f"{video_id}/comments")) % 61
    return [_comment(f"{video_id}/comments/{i}", created, replies=True) for i in range(count)]


def _language(language: str) -> str:
    language = language.lower()
    return language if language in TRANSCRIPT_LANGUAGES else "en"


def _has_subtitles(url: str) -> bool:
    author, video_id = _parsed(url)
    no_subs = "nosubs" in url.lower() or author.startswith("unknown")
    return not no_subs and _digest(video_id)[31] % 4 != 0


def _cues(url: str, language: str) -> list[tuple[int, int, list[str]]]:
    """(start ms, end ms, lines): 3-12 cues, the first with '&', the second two lines."""
    _, video_id = _parsed(url)
    lines = _LINES[language]
    d = _digest(f"{video_id}/transcript/{language}")
    start = d[1] * 10
    cues = []
    for i in range(3 + d[0] % 10):
        e = _digest(f"{video_id}/transcript/{language}/{i}")
        text = [lines[e[0] % len(lines)]]
        if i == 0:
            text = [f"{lines[2]} & {lines[3]}"]
        elif i == 1 or e[1] % 4 == 0:
            text.append(lines[e[2] % len(lines)])
        end = start + 800 + _int(e, 8) % 3200
        cues.append((start, end, text))
        start = end + _int(e, 16) % 600
    return cues


def fake_transcript_cues(url: str, language: str = "en") -> list[tuple[float, float, str]]:
    """The transcript's cues as ``(start s, end s, text)``, lines joined by newlines and
    entities decoded; empty when the video has no subtitles."""
    if not _has_subtitles(url):
        return []
    return [(s / 1000, e / 1000, "\n".join(t)) for s, e, t in _cues(url, _language(language))]


def _vtt_time(ms: int) -> str:
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    seconds, ms = divmod(ms, 1000)
    return f"{hours:02}:{minutes:02}:{seconds:02}.{ms:03}"


def fake_transcript(url: str, language: str = "en") -> dict[str, Any] | None:
    """The transcript answer for *url*, or None (404) when the video has no subtitles:
    sha256(video id)[31] % 4 == 0, the URL contains ``nosubs`` or the author starts with
    ``unknown``. *language* falls back to ``en`` unless it is one of TRANSCRIPT_LANGUAGES."""
    if not _has_subtitles(url):
        return None
    language = _language(language)
    parts = ["WEBVTT\n\n"]
    for n, (start, end, lines) in enumerate(_cues(url, language), 1):
        text = "\n".join(line.replace("&", "&amp;") for line in lines)
        parts.append(f"{n}\n{_vtt_time(start)} --> {_vtt_time(end)}\n{text}\n\n")
    return {
        "transcript": "".join(parts),
        "language": language,
        "id": _parsed(url)[1],
        "originalUrl": url,
    }


def relation_entries(handle: str, kind: str) -> list[tuple[int, dict[str, Any]]]:
    """``(follow time, entry)`` of *handle*'s ``followers`` or ``following``, newest first:
    none when *handle* starts with ``empty``, else sha256(handle/kind) % 81 of them."""
    if handle.startswith("empty"):
        return []
    d = _digest(f"{handle}/{kind}")
    followed = 1_700_000_000 + _int(d, 8) % 20_000_000
    entries = []
    for i in range(_int(d) % 81):
        e = _digest(f"{handle}/{kind}/{i}")
        followed -= 1 + _int(e) % 86_400  # strictly decreasing
        entries.append((followed, _user_entry(_fake_handle(e[8:]))))
    return entries


def fake_followers(handle: str) -> list[dict[str, Any]]:
    """The accounts following *handle*, most recent follow first."""
    return [entry for _, entry in relation_entries(handle, "followers")]


def fake_following(handle: str) -> list[dict[str, Any]]:
    """The accounts *handle* follows, most recent follow first."""
    return [entry for _, entry in relation_entries(handle, "following")]


def fake_search_users(query: str) -> list[dict[str, Any]]:
    """Users matching *query*: none when it starts with ``nobody``, else 1 +
    sha256("search/" + query) % 40 of them, handles built from the query's letters."""
    if query.startswith("nobody"):
        return []
    d = _digest(f"search/{query}")
    stem = re.sub(r"[^a-z0-9_.]", "", query.lower())[:12].strip(".") or "user"
    handles = [stem] if len(stem) >= 2 else []
    for i in range(1 + _int(d) % 40 - len(handles)):
        handles.append(_fake_handle(_digest(f"search/{query}/{i}"), stem))
    return [_user_entry(h) for h in handles]
