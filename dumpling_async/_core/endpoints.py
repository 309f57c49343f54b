"""The API's endpoints as data, and what each costs in credits.

The client's pipeline is the same for every endpoint; what differs (path, price, which
404 it raises) is listed here once.
"""

from __future__ import annotations

import attrs

from .._errors import (
    ConfigurationError,
    NotFoundError,
    ProfileNotFoundError,
    TranscriptNotFoundError,
    VideoNotFoundError,
)

__all__ = [
    "COMMENTS",
    "FOLLOWERS",
    "FOLLOWING",
    "PROFILE",
    "PROFILE_VIDEOS",
    "SEARCH_USERS",
    "TRANSCRIPT",
    "VIDEO",
    "CreditCosts",
    "Endpoint",
    "flight_key",
]


@attrs.frozen(kw_only=True)
class CreditCosts:
    """Credits charged per successful request, by endpoint.

    Only the profile lookup's price (10) is documented by the vendor; the others default
    to 10 as well, a guess on the safe side of a budget (a budget stops early rather than
    late). Set the prices your plan charges, e.g. ``CreditCosts(transcript=5)``. A page of
    a listing (videos, comments, followers, following, search) costs one request's price.
    """

    profile: int = 10
    profile_videos: int = 10
    video: int = 10
    video_comments: int = 10
    transcript: int = 10
    followers: int = 10
    following: int = 10
    search_users: int = 10

    def __attrs_post_init__(self) -> None:
        for name, value in attrs.asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigurationError(f"CreditCosts.{name} must be an int >= 0, got {value!r}")

    def of(self, endpoint: Endpoint) -> int:
        """The price of one successful request to *endpoint*."""
        cost: int = getattr(self, endpoint.cost)
        return cost


@attrs.frozen
class Endpoint:
    """One API path: its name (``/api/v1/<name>``), its price's name in
    :class:`CreditCosts`, and the 404 it raises."""

    name: str
    cost: str
    not_found: type[NotFoundError] = NotFoundError

    @property
    def path(self) -> str:
        return f"/api/v1/{self.name}"


PROFILE = Endpoint("get-tiktok-profile", "profile", ProfileNotFoundError)
PROFILE_VIDEOS = Endpoint("get-tiktok-profile-videos", "profile_videos", ProfileNotFoundError)
VIDEO = Endpoint("get-tiktok-video", "video", VideoNotFoundError)
COMMENTS = Endpoint("get-tiktok-video-comments", "video_comments", VideoNotFoundError)
TRANSCRIPT = Endpoint("get-tiktok-transcript", "transcript", TranscriptNotFoundError)
FOLLOWERS = Endpoint("get-tiktok-user-followers", "followers", ProfileNotFoundError)
FOLLOWING = Endpoint("get-tiktok-user-following", "following", ProfileNotFoundError)
SEARCH_USERS = Endpoint("search-tiktok-users", "search_users", NotFoundError)


def flight_key(endpoint: Endpoint, subject: str, language: str | None = None) -> tuple[str, str]:
    """What makes two requests the same request (for single flight)."""
    return (endpoint.name, subject if language is None else f"{language} {subject}")
