"""Typed, immutable models of what the API returns and what a bulk job yields.

Every field the vendor documents is typed; none is required, since the OpenAPI schema
requires none. Each model keeps the JSON object it was built from as ``raw``, so fields
the vendor adds later are reachable without a release of this library.
"""

from __future__ import annotations

from typing import Any

import attrs

from ._errors import DumplingError

__all__ = [
    "BioLink",
    "CommerceUserInfo",
    "ProfileResult",
    "ProfileTab",
    "RateLimitState",
    "TikTokProfile",
    "TikTokStats",
    "TikTokUser",
]

JSONObject = dict[str, Any]
# Each model's ``raw`` is filled in by the converter with the source object; it is kept
# out of eq and repr.


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


@attrs.frozen(kw_only=True)
class RateLimitState:
    """The account's rate limit as last seen, and what the limiter learned of it.

    ``window`` is the learned time for a used request to count again (seconds) and
    ``refill_rate`` the sustainable rate it implies (requests per second); both are
    ``None`` until observed. ``throttled_seconds`` is the time requests were held back
    before the quota ran out, ``rate_limited`` the number of 429 answers seen.
    """

    limit: int | None = None
    remaining: int | None = None
    window: float | None = None
    refill_rate: float | None = None
    in_flight: int = 0
    throttled_seconds: float = 0.0
    throttle_waits: int = 0
    rate_limited: int = 0


@attrs.frozen(kw_only=True)
class ProfileResult:
    """The outcome of one input position of a bulk lookup: a profile or an error."""

    index: int
    input: object
    handle: str
    profile: TikTokProfile | None = None
    error: DumplingError | None = None

    @property
    def ok(self) -> bool:
        """True when the lookup returned a profile."""
        return self.profile is not None

    def unwrap(self) -> TikTokProfile:
        """Return the profile, or raise the error this position ended with."""
        if self.profile is not None:
            return self.profile
        assert self.error is not None
        raise self.error
