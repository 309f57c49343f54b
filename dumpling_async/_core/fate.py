"""The fate of an attempt: which error it ended with, whether it was charged, whether it
may be retried, whether it stops a batch.

Every such decision is made here and nowhere else: the pipeline classifies each answer
or failure with :func:`error_for_status` / :func:`transport_error`, settles the credit
budget with :func:`charge_of`, and the retry policy and the bulk engine ask
:func:`is_retryable` and :func:`stops_batch`.

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

import aiohttp
import orjson
from multidict import CIMultiDict, CIMultiDictProxy

from .._errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    DumplingError,
    InsufficientCreditsError,
    NotFoundError,
    ProfileNotFoundError,
    ProxyError,
    RateLimitError,
    ServerError,
    UpstreamError,
)
from .._models import RateLimitState

__all__ = [
    "TRANSPORT_ERRORS",
    "Charge",
    "charge_of",
    "error_for_status",
    "is_retryable",
    "proxy_error",
    "scrubbed",
    "stops_batch",
    "transport_error",
]

# What a transport raises when the network fails; anything else is a bug, not a fault.
TRANSPORT_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)
# Failures that happen before a request leaves: it cannot have been charged.
_NOT_SENT = (
    aiohttp.ClientConnectorError,
    aiohttp.ConnectionTimeoutError,
    aiohttp.ClientHttpProxyError,
)


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
    handle: str | None,
    headers: Mapping[str, str],
    retry_after: float | None,
    rate_limit: RateLimitState | None,
    target: str | None = None,
    not_found: type[NotFoundError] = ProfileNotFoundError,
) -> APIStatusError | ProxyError:
    """Map an error response to its exception class, parsing both vendor body shapes.

    *not_found* is the 404 class of the endpoint that answered. A 407 is the proxy's
    answer, not the API's.
    """
    if status == 407:
        return proxy_error(status, target or "", handle)
    cls = not_found if status == 404 else _BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else APIStatusError
    message, code = _error_text(body)
    if not message:
        message = reason or f"HTTP {status}"
    return cls(
        message[:1000],
        status=status,
        handle=handle,
        target=target,
        code=code,
        headers=headers,
        retry_after=retry_after,
        rate_limit=rate_limit,
    )


def scrubbed(exc: BaseException) -> BaseException:
    """The cause as users may see it: no frames (their locals hold the request
    headers) and no request headers in aiohttp's ``request_info``."""
    info = getattr(exc, "request_info", None)
    if isinstance(info, aiohttp.RequestInfo):
        exc.request_info = info._replace(headers=CIMultiDictProxy(CIMultiDict()))  # type: ignore[attr-defined]
    return exc.with_traceback(None)


def proxy_error(status: int, target: str, handle: str | None) -> ProxyError:
    """The proxy's own refusal (a 407, or its 502 on a tunnel it could not open)."""
    why = "wants credentials (407)" if status == 407 else f"answered {status}"
    return ProxyError(
        f"the proxy refused the request for {target!r:.120}: it {why}",
        status=status,
        handle=handle,
        target=target,
    )


def transport_error(
    exc: BaseException, target: str, handle: str | None, *, status: int, sent: bool
) -> APIConnectionError:
    """The one place transport failures become library errors (raise it ``from
    scrubbed(exc)``). *status* and *sent* say how far the attempt got."""
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        return proxy_error(exc.status, target, handle)
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    cls = (
        APITimeoutError
        if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError)
        else APIConnectionError
    )
    verb = "timed out" if cls is APITimeoutError else "failed"
    charge = charge_of(status=status, sent=sent, failure=exc)
    note = "; it may have been charged" if charge is Charge.UNCERTAIN else ""
    return cls(
        f"request for {target!r:.120} {verb} ({detail[:200]}){note}",
        handle=handle,
        target=target,
        response_received=status == 200,
        maybe_charged=charge is Charge.UNCERTAIN,
    )


# -- decide -----------------------------------------------------------------------------
def charge_of(*, status: int, sent: bool, failure: BaseException | None = None) -> Charge:
    """What an attempt cost, from how far it got: the status that came back (0: none),
    whether the request may have reached the server, and the failure, if any."""
    if status == 200:
        return Charge.CONFIRMED  # even if its body broke or was unusable
    if status or not sent or isinstance(failure, _NOT_SENT):
        return Charge.NONE
    return Charge.UNCERTAIN


def is_retryable(error: DumplingError, *, retry_unanswered: bool = False) -> bool:
    """True for 429, 5xx and transport failures that cannot have been charged; failures
    that may have been charged only with *retry_unanswered*."""
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
