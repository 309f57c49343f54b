"""Typed, immutable models of what the API returns.

Every field the vendor documents is typed; none is required, since the OpenAPI schema
requires none. Each model keeps the JSON object it was built from as ``raw``, so fields
the vendor adds later are reachable without a release of this library.

The vendor passes some endpoints through in TikTok's mobile shape (snake_case keys:
profile videos and comments) and others in the web shape (camelCase); the converter
knows which is which, users only see snake_case attributes. That is why a video's
counters come in two classes: ``VideoStatistics`` (an entry of a profile's video list,
mobile shape) and ``VideoStats`` (``get_tiktok_video``, web shape).
"""

from __future__ import annotations

from typing import Any

import attrs

from ._webvtt import TranscriptCue, cues_to_text, parse_webvtt

__all__ = [
    "BioLink",
    "CommentUser",
    "CommerceUserInfo",
    "ProfileTab",
    "ProfileVideo",
    "RateLimitState",
    "TikTokMusic",
    "TikTokProfile",
    "TikTokStats",
    "TikTokTranscript",
    "TikTokUser",
    "TikTokUserSummary",
    "TikTokVideo",
    "VideoAuthor",
    "VideoComment",
    "VideoStatistics",
    "VideoStats",
]

JSONObject = dict[str, Any]
# Each model's ``raw`` is filled in by the converter with the source object; it is kept
# out of eq and repr. Fields marked computed are derived from others, never read from
# the JSON.
COMPUTED = {"computed": True}


def _video_url(user: str | None, video_id: str | None) -> str | None:
    if user and video_id:
        return f"https://www.tiktok.com/@{user}/video/{video_id}"
    return None


# -- get-tiktok-profile (camelCase) --------------------------------------------------------


@attrs.frozen(kw_only=True)
class BioLink:
    """The link in a profile's bio."""

    link: str | None = None
    risk: int | None = None
    raw: JSONObject = attrs.field(factory=dict, eq=False, repr=False)


@attrs.frozen(kw_only=True)
class CommerceUserInfo:
    """Commerce flags of an account."""

    commerce_user: bool | None = None
    raw: JSONObject = attrs.field(factory=dict, eq=False, repr=False)


@attrs.frozen(kw_only=True)
class ProfileTab:
    """Which tabs a profile shows."""

    show_music_tab: bool | None = None
    show_question_tab: bool | None = None
    show_play_list_tab: bool | None = None
    raw: JSONObject = attrs.field(factory=dict, eq=False, repr=False)


@attrs.frozen(kw_only=True)
class TikTokUser:
    """The ``user`` object of a profile."""

    id: str | None = None
    short_id: str | None = None
    unique_id: str | None = None
    nickname: str | None = None
    avatar_larger: str | None = None
    avatar_medium: str | None = None
    avatar_thumb: str | None = None
    signature: str | None = None
    create_time: int | None = None
    verified: bool | None = None
    sec_uid: str | None = None
    ftc: bool | None = None
    relation: int | None = None
    open_favorite: bool | None = None
    bio_link: BioLink | None = None
    comment_setting: int | None = None
    commerce_user_info: CommerceUserInfo | None = None
    duet_setting: int | None = None
    stitch_setting: int | None = None
    private_account: bool | None = None
    secret: bool | None = None
    is_ad_virtual: bool | None = None
    room_id: str | None = None
    unique_id_modify_time: int | None = None
    tt_seller: bool | None = None
    region: str | None = None
    download_setting: int | None = None
    profile_tab: ProfileTab | None = None
    following_visibility: int | None = None
    recommend_reason: str | None = None
    now_invitation_card_url: str | None = None
    nick_name_modify_time: int | None = None
    is_embed_banned: bool | None = None
    can_exp_playlist: bool | None = None
    profile_embed_permission: int | None = None
    language: str | None = None
    event_list: tuple[Any, ...] = ()
    suggest_account_bind: bool | None = None
    is_organization: int | None = None
    raw: JSONObject = attrs.field(factory=dict, eq=False, repr=False)


@attrs.frozen(kw_only=True)
class TikTokStats:
    """The ``stats`` object of a profile."""

    follower_count: int | None = None
    following_count: int | None = None
    heart: int | None = None
    heart_count: int | None = None
    video_count: int | None = None
    digg_count: int | None = None
    friend_count: int | None = None
    raw: JSONObject = attrs.field(factory=dict, eq=False, repr=False)


@attrs.frozen(kw_only=True)
class TikTokProfile:
    """A TikTok profile as ``get-tiktok-profile`` returns it."""

    user: TikTokUser | None = None
    stats: TikTokStats | None = None
    item_list: tuple[JSONObject, ...] = ()
    raw: JSONObject = attrs.field(factory=dict, eq=False, repr=False)


# -- what the client saw of the account's rate limit ---------------------------------------
@attrs.frozen(kw_only=True)
class RateLimitState:
    """The account's rate limit as last seen, and what the limiter learned of it.

    ``window`` is the learned time for a used request to count again (seconds) and
    ``refill_rate`` the sustainable rate it implies (requests per second); both are
    ``None`` until observed. ``throttled_seconds`` is the time requests were held back
    before the quota ran out, ``rate_limited`` the number of 429 answers seen. ``state``
    names what the limiter knows of the server (``"starting"``, ``"unmetered"``,
    ``"closed"``, ``"learning"``, ``"confirming"``, ``"steps"``, ``"gradual"``; see the
    rate-limiting guide) and ``concurrency`` is how many requests the client allows in
    flight (the ``max_concurrency`` given, or the number it chose).
    """

    limit: int | None = None
    remaining: int | None = None
    window: float | None = None
    refill_rate: float | None = None
    in_flight: int = 0
    throttled_seconds: float = 0.0
    throttle_waits: int = 0
    rate_limited: int = 0
    state: str | None = None
    concurrency: int | None = None


# -- get-tiktok-profile-videos (snake_case) ------------------------------------------------
@attrs.frozen(kw_only=True)
class VideoStatistics:
    """The ``statistics`` of a video in a profile's video list."""

    comment_count: int | None = None
    digg_count: int | None = None
    download_count: int | None = None
    play_count: int | None = None
    share_count: int | None = None
    raw: JSONObject = attrs.field(factory=dict, eq=False, repr=False)


@attrs.frozen(kw_only=True)
class VideoAuthor:
    """The ``author`` of a video in a profile's video list."""

    uid: str | None = None
    unique_id: str | None = None
    nickname: str | None = None
    sec_uid: str | None = None
    raw: JSONObject = attrs.field(factory=dict, eq=False, repr=False)


@attrs.frozen(kw_only=True)
class ProfileVideo:
    """One video of ``iter_profile_videos`` (an ``aweme_list`` entry)."""

    aweme_id: str | None = None
    desc: str | None = None
    create_time: int | None = None
    statistics: VideoStatistics | None = None
    video: JSONObject | None = None
    author: VideoAuthor | None = None
    share_url: str | None = None
    raw: JSONObject = attrs.field(factory=dict, eq=False, repr=False)

    @property
    def url(self) -> str | None:
        """The video's canonical URL (for ``get_tiktok_video`` or a transcript)."""
        user = self.author.unique_id if self.author is not None else None
        return _video_url(user, self.aweme_id) or self.share_url


# -- get-tiktok-video (camelCase) ----------------------------------------------------------
@attrs.frozen(kw_only=True)
class VideoStats:
    """The ``stats`` of a video."""

    digg_count: int | None = None
    share_count: int | None = None
    comment_count: int | None = None
    play_count: int | None = None
    collect_count: int | None = None
    raw: JSONObject = attrs.field(factory=dict, eq=False, repr=False)


@attrs.frozen(kw_only=True)
class TikTokMusic:
    """The sound a video uses."""

    id: str | None = None
    title: str | None = None
    author_name: str | None = None
    duration: int | None = None
    original: bool | None = None
    raw: JSONObject = attrs.field(factory=dict, eq=False, repr=False)


@attrs.frozen(kw_only=True)
class TikTokVideo:
    """A video as ``get-tiktok-video`` returns it."""

    id: str | None = None
    desc: str | None = None
    create_time: int | None = None
    create_time_iso: str | None = None
    video: JSONObject | None = None
    author: TikTokUser | None = None
    music: TikTokMusic | None = None
    challenges: tuple[JSONObject, ...] = ()
    stats: VideoStats | None = None
    text_extra: tuple[JSONObject, ...] = ()
    duet_enabled: bool | None = None
    stitch_enabled: bool | None = None
    raw: JSONObject = attrs.field(factory=dict, eq=False, repr=False)

    @property
    def url(self) -> str | None:
        """The video's canonical URL."""
        return _video_url(self.author.unique_id if self.author else None, self.id)


# -- get-tiktok-video-comments (snake_case) ------------------------------------------------
@attrs.frozen(kw_only=True)
class CommentUser:
    """Who wrote a comment."""

    uid: str | None = None
    unique_id: str | None = None
    nickname: str | None = None
    sec_uid: str | None = None
    raw: JSONObject = attrs.field(factory=dict, eq=False, repr=False)


@attrs.frozen(kw_only=True)
class VideoComment:
    """One comment of ``iter_video_comments``; ``reply_comment`` holds the replies the
    API sent along (``reply_comment_total`` says how many exist)."""

    cid: str | None = None
    text: str | None = None
    create_time: int | None = None
    digg_count: int | None = None
    reply_comment_total: int | None = None
    user: CommentUser | None = None
    reply_comment: tuple[VideoComment, ...] = ()
    raw: JSONObject = attrs.field(factory=dict, eq=False, repr=False)


# -- followers, following, user search (camelCase) ----------------------------------------
@attrs.frozen(kw_only=True)
class TikTokUserSummary:
    """An account in a followers, following or search list: its user and stats."""

    user: TikTokUser | None = None
    stats: TikTokStats | None = None
    raw: JSONObject = attrs.field(factory=dict, eq=False, repr=False)


# -- get-tiktok-transcript -----------------------------------------------------------------
def _cues(self: TikTokTranscript) -> tuple[TranscriptCue, ...]:
    return parse_webvtt(self.transcript) if self.transcript else ()


@attrs.frozen(kw_only=True)
class TikTokTranscript:
    """A video's subtitles: the WebVTT as sent (``transcript``) and parsed (``cues``)."""

    transcript: str | None = None
    language: str | None = None
    id: str | None = None
    original_url: str | None = None
    cues: tuple[TranscriptCue, ...] = attrs.field(
        default=attrs.Factory(_cues, takes_self=True), eq=False, metadata=COMPUTED
    )
    raw: JSONObject = attrs.field(factory=dict, eq=False, repr=False)

    @property
    def text(self) -> str:
        """The spoken text, one cue per line, without timings or markup."""
        return cues_to_text(self.cues)
