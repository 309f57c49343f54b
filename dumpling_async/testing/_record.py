"""What the fake server saw and charged: ``RequestRecord`` and the queries over them."""

from __future__ import annotations

import time
from collections import Counter

import attrs

from ._requests import BY_HANDLE, PROFILE, Seen

__all__ = ["Ledger", "RequestRecord"]


@attrs.frozen(kw_only=True)
class RequestRecord:
    """One request as the server saw it.

    ``endpoint`` is the name from the path; ``subject`` the handle, URL, videoUrl or query
    as sent (None when the body was not read or lacked it); ``handle`` the subject of the
    handle-based endpoints only; ``cursor`` the cursor/maxCursor/minTime sent, as a string;
    ``credits`` what this request was charged; ``at`` when it was recorded (for an
    answer, once its answer time had passed), ``arrived`` when it was read.
    """

    endpoint: str
    subject: str | None
    handle: str | None
    cursor: str | None
    status: int
    charged: bool
    credits: int
    fault: str | None
    at: float
    authorized: bool
    arrived: float | None = None  # when it was read, before its answer time (monotonic)


class Ledger:
    """The server's record of requests and charges (a base of ``FakeDumplingServer``)."""

    def __init__(self) -> None:
        self.records: list[RequestRecord] = []
        self.charged: Counter[str] = Counter()  # charged profile lookups, by handle
        self.charges: Counter[tuple[str, str]] = Counter()  # by (endpoint, subject)
        self.rate_limited = 0
        self.user_agents: Counter[str] = Counter()  # the User-Agent of every request
        self._credits_charged = 0

    @property
    def requests(self) -> int:
        return len(self.records)

    @property
    def credits_charged(self) -> int:
        """Credits charged on all endpoints."""
        return self._credits_charged

    def statuses(self) -> Counter[int]:
        return Counter(r.status for r in self.records)

    def requests_for(self, handle: str) -> list[RequestRecord]:
        return [r for r in self.records if r.handle == handle]

    def requests_to(self, endpoint: str, subject: str | None = None) -> list[RequestRecord]:
        """The requests to *endpoint* (about *subject*, if given)."""
        return [
            r
            for r in self.records
            if r.endpoint == endpoint and (subject is None or r.subject == subject)
        ]

    def _record(
        self,
        seen: Seen,
        status: int,
        *,
        credits: int | None = None,
        fault: str | None = None,
        authorized: bool = True,
    ) -> None:
        self.records.append(
            RequestRecord(
                endpoint=seen.endpoint,
                subject=seen.subject,
                handle=seen.subject if seen.endpoint in BY_HANDLE else None,
                cursor=seen.cursor,
                status=status,
                charged=credits is not None,
                credits=credits or 0,
                fault=fault,
                at=time.monotonic(),
                authorized=authorized,
                arrived=seen.arrived,
            )
        )

    def _charge(self, endpoint: str, subject: str, seen: Seen, cost: int) -> None:
        """Record a charged 200."""
        self._credits_charged += cost
        self.charges[endpoint, subject] += 1
        if endpoint == PROFILE:
            self.charged[subject] += 1
        self._record(seen, 200, credits=cost)
