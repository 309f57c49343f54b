"""The API's endpoints as data: one row each, and what each costs in credits.

The request pipeline is the same for every endpoint; what differs (path, the body field
naming what is asked, the model, the 404 it raises, how it pages, its price) is listed
here once. Adding an endpoint is a row here, a model, and a thin client method.
"""

from __future__ import annotations

from typing import Any, TypeVar

import attrs

from .._errors import (
    ConfigurationError,
    DumplingError,
    NotFoundError,
    ProfileNotFoundError,
    TranscriptNotFoundError,
    VideoNotFoundError,
)
from .._models import (
    ProfileVideo,
    TikTokProfile,
    TikTokTranscript,
    TikTokUserSummary,
    TikTokVideo,
    VideoComment,
)
from .turns import INTERACTIVE, Turn

E = TypeVar("E", bound=DumplingError)

__all__ = [
    "COMMENTS",
    "FOLLOWERS",
    "FOLLOWING",
    "PROFILE",
    "PROFILE_VIDEOS",
    "SEARCH_USERS",
    "TRANSCRIPT",
    "VIDEO",
    "Call",
    "CreditCosts",
    "Endpoint",
    "Paging",
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
class Paging:
    """How a listing pages: its item list, cursor in and out, page size field.

    Each listing spells these differently (``maxCursor`` in, ``max_cursor`` out;
    ``minTime`` in, ``minCursor`` out; ``cursor``); users only see one opaque cursor.
    """

    items_key: str
    cursor_param: str  # the request's cursor field
    cursor_key: str  # the response's next-page cursor field
    cursor_as_str: bool = False  # the request wants the cursor as a string
    count_param: str | None = "count"


@attrs.frozen(kw_only=True)
class Endpoint:
    """One API path (``/api/v1/<name>``) and everything that differs between paths."""

    name: str
    cost: str  # the name of its price in CreditCosts
    subject: str  # the body field naming what is asked about
    model: type[Any]  # what a 200 holds, or one item of a page
    not_found: type[NotFoundError] = NotFoundError
    by_handle: bool = False  # the subject is a handle: errors carry it as ``.handle``
    paging: Paging | None = None
    cacheable: bool = False  # answers may come from the client's ProfileCache
    requires: str | None = None  # a 200 without this object is not the model

    @property
    def path(self) -> str:
        return f"/api/v1/{self.name}"

    def identify(self, error: E, subject: str) -> E:
        """Name *subject* on *error*: its ``target``, and its ``handle`` when the
        subject is one."""
        error.target = subject
        error.handle = subject if self.by_handle else None
        return error

    def call(self, subject: str, *, turn: Turn = INTERACTIVE, **extra: Any) -> Call:
        """The request for *subject*, with *extra* body fields (which also tell calls apart)."""
        params = {self.subject: subject, **extra} if extra else {self.subject: subject}
        variant = " ".join(str(value) for value in extra.values()) if extra else None
        return Call(self, subject, params, variant, turn)


@attrs.frozen(slots=True)
class Call:
    """One request to make: the endpoint, what it is about, its JSON body fields."""

    endpoint: Endpoint
    subject: str
    params: dict[str, Any] = attrs.field(eq=False)
    variant: str | None = None
    turn: Turn = attrs.field(default=INTERACTIVE, eq=False)  # how it waits for the quota

    @property
    def key(self) -> tuple[str, str]:
        """What makes two calls the same request (for single flight)."""
        subject = self.subject if self.variant is None else f"{self.variant} {self.subject}"
        return (self.endpoint.name, subject)

    @property
    def handle(self) -> str | None:
        """The subject when it is a handle (errors carry it as ``.handle``)."""
        return self.subject if self.endpoint.by_handle else None

    def identify(self, error: E) -> E:
        """Name this call on *error* (``target``, and ``handle`` for a handle)."""
        return self.endpoint.identify(error, self.subject)


PROFILE = Endpoint(
    name="get-tiktok-profile",
    cost="profile",
    subject="handle",
    model=TikTokProfile,
    not_found=ProfileNotFoundError,
    by_handle=True,
    cacheable=True,
    requires="user",
)
VIDEO = Endpoint(
    name="get-tiktok-video",
    cost="video",
    subject="url",
    model=TikTokVideo,
    not_found=VideoNotFoundError,
)
TRANSCRIPT = Endpoint(
    name="get-tiktok-transcript",
    cost="transcript",
    subject="videoUrl",
    model=TikTokTranscript,
    not_found=TranscriptNotFoundError,
)
PROFILE_VIDEOS = Endpoint(
    name="get-tiktok-profile-videos",
    cost="profile_videos",
    subject="handle",
    model=ProfileVideo,
    not_found=ProfileNotFoundError,
    by_handle=True,
    paging=Paging("aweme_list", "maxCursor", "max_cursor", cursor_as_str=True, count_param=None),
)
COMMENTS = Endpoint(
    name="get-tiktok-video-comments",
    cost="video_comments",
    subject="url",
    model=VideoComment,
    not_found=VideoNotFoundError,
    paging=Paging("comments", "cursor", "cursor"),
)
FOLLOWERS = Endpoint(
    name="get-tiktok-user-followers",
    cost="followers",
    subject="handle",
    model=TikTokUserSummary,
    not_found=ProfileNotFoundError,
    by_handle=True,
    paging=Paging("followers", "minTime", "minCursor"),
)
FOLLOWING = Endpoint(
    name="get-tiktok-user-following",
    cost="following",
    subject="handle",
    model=TikTokUserSummary,
    not_found=ProfileNotFoundError,
    by_handle=True,
    paging=Paging("followingList", "minTime", "minCursor"),
)
SEARCH_USERS = Endpoint(
    name="search-tiktok-users",
    cost="search_users",
    subject="query",
    model=TikTokUserSummary,
    paging=Paging("userList", "cursor", "cursor"),
)
