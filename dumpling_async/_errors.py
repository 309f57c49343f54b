"""The exception hierarchy, and nothing else.

Which response or failure becomes which error, and what each means for credits, retries
and batches, is decided in ``_core/fate.py``.

DumplingError
├── ConfigurationError          (also ValueError)
├── ClientClosedError           (also RuntimeError)
├── InvalidInputError           (also ValueError; raised before any request)
│   ├── InvalidHandleError
│   └── InvalidVideoURLError
├── APIStatusError              .status .message .code .target .headers .retry_after .rate_limit
│   ├── BadRequestError            400
│   ├── AuthenticationError        401
│   ├── InsufficientCreditsError   403
│   ├── NotFoundError              404
│   │   ├── ProfileNotFoundError      (a handle's profile, videos or followers)
│   │   ├── VideoNotFoundError        (a video or its comments)
│   │   └── TranscriptNotFoundError   (the video has no subtitles)
│   ├── RateLimitError             429
│   │   └── MaxWaitExceededError      (client-side: the quota would hold it past max_wait)
│   ├── ServerError                500 and other 5xx
│   └── UpstreamError              502, 503, 504
├── APIConnectionError
│   ├── APITimeoutError
│   └── ProxyError              .status (the proxy's own answer: 407, 502, ...)
├── InvalidResponseError
├── BudgetExceededError
├── BatchAbortedError           .cause
├── DuplicateHandleError        .first_index
└── InputFailedError            .results (the input of a gather_* call raised)

Every error has ``.target``: what the request was about (handle, video URL or search
query), and ``.handle`` when that is a handle. An error raised by a paging iterator also
has ``.cursor``: pass it as ``start_cursor=`` to resume at the page that failed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._models import RateLimitState

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "BatchAbortedError",
    "BudgetExceededError",
    "ClientClosedError",
    "ConfigurationError",
    "DumplingError",
    "DuplicateHandleError",
    "InputFailedError",
    "InsufficientCreditsError",
    "InvalidHandleError",
    "InvalidInputError",
    "InvalidResponseError",
    "InvalidVideoURLError",
    "NotFoundError",
    "ProfileNotFoundError",
    "ProxyError",
    "RateLimitError",
    "ServerError",
    "TranscriptNotFoundError",
    "UpstreamError",
    "VideoNotFoundError",
]


class DumplingError(Exception):
    """Base class of every error this library raises."""

    handle: str | None
    target: str | None
    # Set by the paging iterators: the cursor of the page that failed (None: the first).
    cursor: str | None = None

    def __init__(
        self, message: str, *, handle: str | None = None, target: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.handle = handle
        self.target = handle if target is None else target

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only constructors do not survive pickle's default protocol.
        return (_rebuild, (type(self), self.__dict__.copy()))


def _where(error: DumplingError) -> str:
    """What a message says the error is about: ``for handle 'x'``, ``for '<url>'``, or nothing."""
    if error.handle:
        return f" for handle {error.handle!r}"
    if error.target:
        return f" for {error.target!r:.120}"
    return ""


def _rebuild(cls: type[DumplingError], state: dict[str, object]) -> DumplingError:
    err = cls.__new__(cls)
    Exception.__init__(err, state.get("message", ""))
    err.__dict__.update(state)
    return err


class ConfigurationError(DumplingError, ValueError):
    """The client was configured in a way that cannot work (no key, unsafe URL, bad option)."""


class ClientClosedError(DumplingError, RuntimeError):
    """The client was used after ``aclose()``."""


class InvalidInputError(DumplingError, ValueError):
    """An argument is not valid for the API; no request was made, nothing was charged."""


class InvalidHandleError(InvalidInputError):
    """The input is not a TikTok handle or profile URL; no request was made."""


class InvalidVideoURLError(InvalidInputError):
    """The input is not a TikTok video URL (or short link); no request was made."""


class APIStatusError(DumplingError):
    """The API answered with an error status."""

    status: int

    def __init__(
        self,
        message: str,
        *,
        status: int,
        handle: str | None = None,
        target: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        retry_after: float | None = None,
        rate_limit: RateLimitState | None = None,
    ) -> None:
        super().__init__(message, handle=handle, target=target)
        self.status = status
        self.code = code
        self.headers: dict[str, str] = dict(headers or {})
        self.retry_after = retry_after
        self.rate_limit = rate_limit

    def __str__(self) -> str:
        return f"{self.status}{_where(self)}: {self.message}"


class BadRequestError(APIStatusError):
    """400: the API rejected the request parameters."""


class AuthenticationError(APIStatusError):
    """401: the API key is missing, invalid or inactive. Stops a bulk job."""


class InsufficientCreditsError(APIStatusError):
    """403: the account is out of credits. Stops a bulk job."""


class NotFoundError(APIStatusError):
    """404: what was asked for does not exist. Not charged, not retried."""


class ProfileNotFoundError(NotFoundError):
    """404: no TikTok profile has this handle."""


class VideoNotFoundError(NotFoundError):
    """404: no TikTok video has this URL (or it was removed)."""


class TranscriptNotFoundError(NotFoundError):
    """404: the video has no subtitles to transcribe (or does not exist)."""


class RateLimitError(APIStatusError):
    """429: the account's request quota is exhausted for now."""


class MaxWaitExceededError(RateLimitError):
    """The rate limit would hold the request longer than its ``max_wait``: raised
    before it is sent or reserved (never charged, never retried). ``retry_after`` is the
    wait the limiter predicted (None when it could not say and the wait ran out), and
    ``status`` is 429, what a web backend answers its own caller with."""

    def __init__(self, max_wait: float, predicted: float | None) -> None:
        said = f"{predicted:.3g} s" if predicted is not None else "longer"
        super().__init__(
            f"the rate limit would hold this request {said}, over max_wait={max_wait:g} s",
            status=429,
            retry_after=predicted,
        )
        self.max_wait = max_wait


class ServerError(APIStatusError):
    """500 (and other unexpected 5xx): the API failed."""


class UpstreamError(APIStatusError):
    """502/503/504: the vendor's upstream profile service failed or rate-limited it."""


class APIConnectionError(DumplingError):
    """The request did not complete: connection refused, reset or dropped, or no answer
    in time.

    ``response_received`` is true when a 200 status arrived before the failure: the
    request was charged, and it is never sent again. ``maybe_charged`` is true when the
    request reached the server (or may have) and no answer came: the server may have
    finished and charged it, so it is counted in ``credits_uncertain`` and not retried
    unless ``RetryPolicy(retry_unanswered=True)``. A failure before the request left
    (DNS, connection refused) has neither and is retried.
    """

    maybe_charged: bool = False

    def __init__(
        self,
        message: str,
        *,
        handle: str | None = None,
        target: str | None = None,
        response_received: bool = False,
        maybe_charged: bool = False,
    ) -> None:
        super().__init__(message, handle=handle, target=target)
        self.response_received = response_received
        self.maybe_charged = maybe_charged

    def __str__(self) -> str:
        where = _where(self)
        return f"request{where}: {self.message}" if where else self.message


class APITimeoutError(APIConnectionError):
    """An attempt took longer than the client's ``timeout``."""


class ProxyError(APIConnectionError):
    """The proxy between the client and the API refused or failed the request (``.status``:
    407 when it wants credentials, 502/503 when it could not reach the API). The request
    never reached the API: nothing was charged."""

    def __init__(
        self, message: str, *, status: int, handle: str | None = None, target: str | None = None
    ) -> None:
        super().__init__(message, handle=handle, target=target)
        self.status = status


class InvalidResponseError(DumplingError):
    """A 200 response whose body is not what the endpoint returns (not JSON, truncated,
    wrong shape). ``body`` keeps the first 64 KiB of what arrived, for a bug report."""

    body: bytes | None = None

    def __init__(
        self,
        message: str,
        *,
        handle: str | None = None,
        target: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message, handle=handle, target=target)
        self.status = status


class BudgetExceededError(DumplingError):
    """Not attempted: the client's credit budget (``max_credits``) was reached."""


class BatchAbortedError(DumplingError):
    """Not attempted: an account-level error stopped the batch; it is ``.cause``."""

    def __init__(
        self, message: str, *, handle: str | None = None, cause: BaseException | None = None
    ) -> None:
        super().__init__(message, handle=handle)
        self.cause = cause


class DuplicateHandleError(DumplingError):
    """A repeat of a handle answered earlier in the same stream whose outcome was not kept.

    Only ``iter_profiles`` yields it, for a repeat that comes after the outcomes of 512
    other handles (memory stays bounded); the handle was not paid for twice.
    ``first_index`` is the position that has its outcome.
    """

    def __init__(self, message: str, *, handle: str | None = None, first_index: int) -> None:
        super().__init__(message, handle=handle)
        self.first_index = first_index


class InputFailedError(DumplingError):
    """The input of a ``gather_*`` call raised part way (a database cursor or a streamed
    body breaking). Lookups already sent were finished; ``results`` holds every result
    produced, each with its ``index``, and the input's exception is ``__cause__``.
    (``iter_*`` yields those results and then re-raises the input's own exception.)"""

    def __init__(self, message: str, *, results: list[Any]) -> None:
        super().__init__(message)
        self.results = results
