"""dumpling-async: an asyncio-native client for the DumplingAI API.

async with AsyncDumplingClient() as client:
    profile = await client.get_tiktok_profile("stoolpresidente")
"""

import logging

from ._client import AsyncDumplingClient
from ._core.budget import CreditBudget, LocalCreditBudget
from ._core.cache import ProfileCache
from ._core.endpoints import CreditCosts
from ._core.hooks import (
    ClientHooks,
    CreditsEvent,
    PauseEvent,
    RequestEvent,
    ResponseEvent,
    RetryEvent,
    ThrottleEvent,
)
from ._core.inputs import normalize_handle, normalize_video_url
from ._core.paging import Pager
from ._core.ratelimit import AdaptiveRateLimiter, Permit, RateLimiter, ResponseInfo
from ._core.retry import RetryPolicy
from ._core.shared import SharedCache
from ._core.turns import Priority
from ._errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    BatchAbortedError,
    BudgetExceededError,
    ClientClosedError,
    ConfigurationError,
    DumplingError,
    DuplicateHandleError,
    InputFailedError,
    InsufficientCreditsError,
    InvalidHandleError,
    InvalidInputError,
    InvalidResponseError,
    InvalidVideoURLError,
    MaxWaitExceededError,
    NotFoundError,
    ProfileNotFoundError,
    ProxyError,
    RateLimitError,
    ServerError,
    TranscriptNotFoundError,
    UpstreamError,
    VideoNotFoundError,
)
from ._models import (
    BioLink,
    CommentUser,
    CommerceUserInfo,
    ProfileTab,
    ProfileVideo,
    RateLimitState,
    TikTokMusic,
    TikTokProfile,
    TikTokStats,
    TikTokTranscript,
    TikTokUser,
    TikTokUserSummary,
    TikTokVideo,
    VideoAuthor,
    VideoComment,
    VideoStatistics,
    VideoStats,
)
from ._results import ProfileResult, TranscriptResult, VideoResult
from ._version import __version__
from ._webvtt import TranscriptCue, parse_webvtt

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AdaptiveRateLimiter",
    "AsyncDumplingClient",
    "AuthenticationError",
    "BadRequestError",
    "BatchAbortedError",
    "BioLink",
    "BudgetExceededError",
    "ClientClosedError",
    "ClientHooks",
    "CommentUser",
    "CommerceUserInfo",
    "ConfigurationError",
    "CreditBudget",
    "CreditCosts",
    "CreditsEvent",
    "DumplingError",
    "DuplicateHandleError",
    "InputFailedError",
    "InsufficientCreditsError",
    "InvalidHandleError",
    "InvalidInputError",
    "InvalidResponseError",
    "InvalidVideoURLError",
    "LocalCreditBudget",
    "MaxWaitExceededError",
    "NotFoundError",
    "Pager",
    "PauseEvent",
    "Permit",
    "Priority",
    "ProfileCache",
    "ProfileNotFoundError",
    "ProfileResult",
    "ProfileTab",
    "ProfileVideo",
    "ProxyError",
    "RateLimitError",
    "RateLimitState",
    "RateLimiter",
    "RequestEvent",
    "ResponseEvent",
    "ResponseInfo",
    "RetryEvent",
    "RetryPolicy",
    "ServerError",
    "SharedCache",
    "ThrottleEvent",
    "TikTokMusic",
    "TikTokProfile",
    "TikTokStats",
    "TikTokTranscript",
    "TikTokUser",
    "TikTokUserSummary",
    "TikTokVideo",
    "TranscriptCue",
    "TranscriptNotFoundError",
    "TranscriptResult",
    "UpstreamError",
    "VideoAuthor",
    "VideoComment",
    "VideoNotFoundError",
    "VideoResult",
    "VideoStatistics",
    "VideoStats",
    "__version__",
    "normalize_handle",
    "normalize_video_url",
    "parse_webvtt",
]

# The standard library-logging idiom: silent until the application configures logging.
logging.getLogger(__name__).addHandler(logging.NullHandler())
