"""The fate of an attempt: which error it ended with, whether it was charged, whether it
may be retried, whether it stops a batch.

Every such decision is made here and nowhere else: the pipeline classifies each answer
or failure with :func:`error_for_status` / :func:`send_error`, settles the credit
budget with :func:`charge_of`, and the retry policy and the bulk engine ask
:func:`is_retryable` and :func:`stops_batch`. A failure arrives as the transport's
neutral ``SendFailed``: this module knows no HTTP library. Errors are made without the
lookup's identity; the pipeline names the call on them in one place.

Credits are money, so an attempt is charged in one of three ways: ``CONFIRMED`` (a 200
arrived, whatever became of its body), ``NONE`` (another status arrived, or the request
never left: DNS, refused, connect timeout) or ``UNCERTAIN`` (it reached the server, or
may have, and no answer came: a timeout, a dropped connection, a cancellation). A server
that finishes a request its client gave up on still charges it, so an uncertain charge
counts against the budget and is not sent again unless the user opted in.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

import orjson

from .._errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    DumplingError,
    InsufficientCreditsError,
    InvalidResponseError,
    MaxWaitExceededError,
    NotFoundError,
    ProfileNotFoundError,
    ProxyError,
    RateLimitError,
    ServerError,
    UpstreamError,
)
from .._models import RateLimitState
from .transport import Failure, SendFailed

__all__ = [
    "Charge",
    "charge_of",
    "error_for_status",
    "is_retryable",
    "proxy_error",
    "send_error",
    "stops_batch",
]


class Charge(enum.Enum):
    """What an attempt cost."""

    NONE = "none"
    CONFIRMED = "confirmed"
    UNCERTAIN = "uncertain"


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: InsufficientCreditsError,
    404: ProfileNotFoundError,
    429: RateLimitError,
    500: ServerError,
    502: UpstreamError,
    503: UpstreamError,
    504: UpstreamError,
}
_RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
# Account-level errors: every further request would fail the same way.
_STOPS_BATCH = (AuthenticationError, InsufficientCreditsError)


# -- classify ---------------------------------------------------------------------------
def _error_text(body: bytes) -> tuple[str | None, str | None]:
    """Return (message, code) from either vendor error shape, or (None, None)."""
    try:
        data = orjson.loads(body)
    except (orjson.JSONDecodeError, TypeError):
        return None, None
    if not isinstance(data, dict):
        return None, None
    error = data.get("error")
    if isinstance(error, str):
        return error, None
    if isinstance(error, dict):
        message, code = error.get("message"), error.get("code")
        return (
            message if isinstance(message, str) else None,
            code if isinstance(code, str) else None,
        )
    message = data.get("message")
    return (message if isinstance(message, str) else None), None


def error_for_status(
    status: int,
    body: bytes,
    *,
    reason: str | None,
    headers: Mapping[str, str],
    retry_after: float | None,
    rate_limit: RateLimitState | None,
    not_found: type[NotFoundError] = ProfileNotFoundError,
) -> APIStatusError | ProxyError:
    """Map an error response to its exception class, parsing both vendor body shapes.

    *not_found* is the 404 class of the endpoint that answered. A 407 is the proxy's
    answer, not the API's.
    """
    if status == 407:
        return proxy_error(status)
    cls = not_found if status == 404 else _BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else APIStatusError
    message, code = _error_text(body)
    if not message:
        message = reason or f"HTTP {status}"
    return cls(
        message[:1000],
        status=status,
        code=code,
        headers=headers,
        retry_after=retry_after,
        rate_limit=rate_limit,
    )


def proxy_error(status: int) -> ProxyError:
    """The proxy's own refusal (a 407, or its 502 on a tunnel it could not open)."""
    why = "wants credentials (407)" if status == 407 else f"answered {status}"
    return ProxyError(f"refused by the proxy: it {why}", status=status)


def send_error(failure: SendFailed, charge: Charge) -> DumplingError:
    """The library error for a transport's failure, given what the attempt cost (raise
    it ``from failure.cause``)."""
    if failure.kind is Failure.PROXY:
        return proxy_error(failure.status or 0)
    if failure.kind is Failure.TOO_LARGE:
        return InvalidResponseError(failure.detail, status=failure.status)
    timed_out = failure.kind is Failure.TIMEOUT
    cls = APITimeoutError if timed_out else APIConnectionError
    note = "; it may have been charged" if charge is Charge.UNCERTAIN else ""
    return cls(
        f"{'timed out' if timed_out else 'failed'} ({failure.detail[:200]}){note}",
        response_received=failure.status == 200,
        maybe_charged=charge is Charge.UNCERTAIN,
    )


# -- decide -----------------------------------------------------------------------------
def charge_of(*, status: int | None, went_out: bool) -> Charge:
    """What an attempt cost, from how far it got: the status that came back (None:
    none) and whether the request may have reached the server."""
    if status == 200:
        return Charge.CONFIRMED  # even if its body broke or was unusable
    if status is not None or not went_out:
        return Charge.NONE
    return Charge.UNCERTAIN


def is_retryable(error: DumplingError, *, retry_unanswered: bool = False) -> bool:
    """True for 429, 5xx and transport failures that cannot have been charged; failures
    that may have been charged only with *retry_unanswered*."""
    if isinstance(error, MaxWaitExceededError):
        return False  # the caller's own bound: it asked not to wait
    if isinstance(error, APIStatusError):
        return error.status in _RETRYABLE_STATUS
    if isinstance(error, ProxyError):
        return error.status >= 500  # it never reached the API; a 407 will not change
    if not isinstance(error, APIConnectionError) or error.response_received:
        return False  # a 200 arrived: charged, never sent again
    return retry_unanswered or not error.maybe_charged


def stops_batch(error: DumplingError) -> bool:
    """True for account-level errors (401, 403): a bulk job stops sending at once."""
    return isinstance(error, _STOPS_BATCH)
