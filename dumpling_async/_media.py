"""Typed models of the TikTok endpoints beyond the profile: videos, comments, transcripts
and user lists.

Same rules as the profile models: documented fields typed, none required, the source
object kept as ``raw``. The vendor passes some endpoints through in TikTok's mobile shape
(snake_case keys: profile videos and comments) and others in the web shape (camelCase);
the converter knows which is which, users only see snake_case attributes.
"""

from __future__ import annotations

from typing import Any

import attrs

from ._errors import DumplingError
from ._models import TikTokStats, TikTokUser
from ._webvtt import TranscriptCue, cues_to_text, parse_webvtt

__all__ = [
    "CommentUser",
    "ProfileVideo",
    "TikTokMusic",
    "TikTokTranscript",
    "TikTokUserSummary",
    "TikTokVideo",
    "TranscriptResult",
    "VideoAuthor",
    "VideoComment",
    "VideoResult",
    "VideoStatistics",
    "VideoStats",
]

JSONObject = dict[str, Any]
# Fields marked computed are derived from others, never read from the JSON.
COMPUTED = {"computed": True}


def _video_url(user: str | None, video_id: str | None) -> str | None:
    if user and video_id:
        return f"https://www.tiktok.com/@{user}/video/{video_id}"
    return None


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


# -- bulk results --------------------------------------------------------------------------
@attrs.frozen(kw_only=True)
class VideoResult:
    """The outcome of one input position of ``gather_videos`` / ``iter_videos``."""

    index: int
    input: object
    url: str
    video: TikTokVideo | None = None
    error: DumplingError | None = None

    @property
    def ok(self) -> bool:
        """True when the lookup returned a video."""
        return self.video is not None

    def unwrap(self) -> TikTokVideo:
        """Return the video, or raise the error this position ended with."""
        if self.video is not None:
            return self.video
        assert self.error is not None
        raise self.error


@attrs.frozen(kw_only=True)
class TranscriptResult:
    """The outcome of one input position of ``gather_transcripts`` / ``iter_transcripts``."""

    index: int
    input: object
    url: str
    transcript: TikTokTranscript | None = None
    error: DumplingError | None = None

    @property
    def ok(self) -> bool:
        """True when the lookup returned a transcript."""
        return self.transcript is not None

    def unwrap(self) -> TikTokTranscript:
        """Return the transcript, or raise the error this position ended with."""
        if self.transcript is not None:
            return self.transcript
        assert self.error is not None
        raise self.error
