"""dumpling-async: an asyncio-native client for the DumplingAI API.

async with AsyncDumplingClient() as client:
    profile = await client.get_tiktok_profile("stoolpresidente")
"""

import logging

from ._budget import CreditBudget, LocalCreditBudget
from ._cache import ProfileCache
from ._client import AsyncDumplingClient
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
    InsufficientCreditsError,
    InvalidHandleError,
    InvalidResponseError,
    ProfileNotFoundError,
    RateLimitError,
    ServerError,
    UpstreamError,
)
from ._handles import normalize_handle
from ._models import (
    BioLink,
    CommerceUserInfo,
    ProfileResult,
    ProfileTab,
    RateLimitState,
    TikTokProfile,
    TikTokStats,
    TikTokUser,
)
from ._ratelimit import AdaptiveRateLimiter, Permit, RateLimiter, ResponseInfo
from ._retry import RetryPolicy
from ._version import __version__

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
    "CommerceUserInfo",
    "ConfigurationError",
    "CreditBudget",
    "DumplingError",
    "DuplicateHandleError",
    "InsufficientCreditsError",
    "InvalidHandleError",
    "InvalidResponseError",
    "LocalCreditBudget",
    "Permit",
    "ProfileCache",
    "ProfileNotFoundError",
    "ProfileResult",
    "ProfileTab",
    "RateLimitError",
    "RateLimitState",
    "RateLimiter",
    "ResponseInfo",
    "RetryPolicy",
    "ServerError",
    "TikTokProfile",
    "TikTokStats",
    "TikTokUser",
    "UpstreamError",
    "__version__",
    "normalize_handle",
]

# The standard library-logging idiom: silent until the application configures logging.
logging.getLogger(__name__).addHandler(logging.NullHandler())
