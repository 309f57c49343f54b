"""The seam below the pipeline: send one POST, return a complete answer or say how far
it got.

A transport's ``post`` returns a :class:`Response` (status, headers, body) or raises
:class:`SendFailed`, the one failure it may raise: whether the request went out, the
status line that came back first, if any, and the HTTP library's own exception as its
cause. Each transport maps its library's errors itself (``aiohttp_transport.py`` for the
real one, ``mock.py`` in memory), so the policy above (``fate``) depends on no HTTP
library. A cancellation is not a failure and is not mapped: the :class:`Progress` the
transport keeps says how far the cancelled attempt got.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Mapping
from typing import NamedTuple, Protocol

from yarl import URL

__all__ = ["Failure", "Progress", "Response", "SendFailed", "Transport"]


class Response(NamedTuple):
    """A complete answer."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    reason: str | None


class Progress:
    """How far one attempt got, written by the transport alone as it happens and read by
    the pipeline however the attempt ends (a cancellation included). The pipeline may
    give it an ``on_leave`` listener first: the limiter hears the moment the request
    leaves, which on a connection still being opened is well after its permit."""

    __slots__ = ("left_at", "on_leave", "status", "went_out")

    def __init__(self) -> None:
        self.went_out = False  # it held a connection: the server may have received it
        self.left_at = 0.0  # when it did (time.monotonic(); 0: not known)
        self.status: int | None = None  # the status line that came back (None: none)
        self.on_leave: Callable[[], None] | None = None

    def leave(self) -> None:
        """The transport holds a connection for the request: from now on the server may
        receive it."""
        self.went_out, self.left_at = True, time.monotonic()
        if self.on_leave is not None:
            self.on_leave()

    def __repr__(self) -> str:
        return f"Progress(went_out={self.went_out}, status={self.status})"


class Failure(enum.Enum):
    """What kind of failure ended an attempt without a complete answer."""

    CONNECTION = "connection"  # refused, reset, dropped, cut mid-body
    TIMEOUT = "timeout"  # no (complete) answer in time
    PROXY = "proxy"  # the proxy refused the tunnel; ``status`` is the proxy's
    TOO_LARGE = "too_large"  # a 200 body ran past the client's size cap


class SendFailed(Exception):
    """No complete answer: *kind*, whether the request went out (reached the server or
    may have), the status line that came first (None: none) and *cause*, the HTTP
    library's exception (without its frames or request headers), or None. A transport
    builds it from its :class:`Progress`, which it has brought up to date first: the
    pipeline charges from the progress, and classifies from this."""

    def __init__(
        self,
        detail: str,
        *,
        kind: Failure,
        went_out: bool,
        status: int | None = None,
        cause: BaseException | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.kind = kind
        self.went_out = went_out
        self.status = status
        self.cause = cause

    def __repr__(self) -> str:
        return (
            f"SendFailed({self.detail!r}, kind={self.kind.name}, went_out={self.went_out}, "
            f"status={self.status})"
        )


class Transport(Protocol):
    """Sends the pipeline's requests."""

    async def post(self, url: URL, body: bytes, progress: Progress) -> Response:
        """POST *body* (JSON) to *url*; keep *progress* up to date as the attempt goes;
        return the complete answer or raise :class:`SendFailed`."""
        ...

    async def aclose(self) -> None:
        """Release connections (a lent session is left open)."""
        ...
