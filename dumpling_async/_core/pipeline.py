"""One request, start to finish: budget -> slot -> limiter -> send -> read -> classify ->
retry -> parse.

Every endpoint, single lookups, bulk jobs and listings alike, goes through
:meth:`Pipeline.call`. What a failed attempt means (charged, retried, stops a batch) is
decided in ``fate``; the pipeline only applies it. The transport reports how far an
attempt got (its ``Progress``, and a neutral ``SendFailed``); the pipeline asks once per
attempt what that cost, and names the call on every error it raises, in ``_try``.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple, TypeGuard, TypeVar

import orjson
from yarl import URL

from .._errors import (
    ClientClosedError,
    DumplingError,
    InvalidResponseError,
    MaxWaitExceededError,
)
from .budget import CreditBudget
from .concurrency import Concurrency
from .departures import Departures
from .endpoints import Call, CreditCosts, Endpoint
from .fate import Charge, charge_of, error_for_status, send_error
from .headers import response_info
from .hooks import (
    CreditsEvent,
    HookRunner,
    PauseEvent,
    RequestEvent,
    ResponseEvent,
    RetryEvent,
    ThrottleEvent,
)
from .log import LOGGER_NAME
from .ratelimit import HearsDepartures, Permit, RateLimiter, ResponseInfo, TakesTurns
from .retry import RetryPolicy
from .transport import Progress, Response, SendFailed, Transport

__all__ = ["KEPT_BODY", "Pipeline", "StopCheck"]

T = TypeVar("T")
E = TypeVar("E")
# A bulk job's stop signal: the error to end with instead of (re)trying, or None.
StopCheck = Callable[[], DumplingError | None]
KEPT_BODY = 64 * 1024  # of a 200 body that could not be parsed, for InvalidResponseError
_NOT_SENT = ResponseInfo(status=0, limit=None, remaining=None)  # the limiter's "never sent"


class Pipeline:
    """Sends calls for one client: its transport, limiter, budget, retry policy and
    prices, and at most ``concurrency.limit`` requests in flight."""

    def __init__(
        self,
        *,
        transport: Transport,
        base_url: URL,
        limiter: RateLimiter,
        budget: CreditBudget,
        retry: RetryPolicy,
        costs: CreditCosts,
        concurrency: Concurrency,
        request_source: str | None,
        log: Any,
        hooks: HookRunner | None = None,
    ) -> None:
        self.transport = transport
        self.limiter = limiter
        self._departed = limiter.departed if isinstance(limiter, HearsDepartures) else None
        self._departures = Departures()  # when requests left: how unevenly each was held
        self._lanes = limiter if _takes_turns(limiter) else None  # serves lanes, bounds waits
        self.budget = budget
        self.retry = retry
        self.costs = costs
        self.concurrency = concurrency
        self.log = log
        self._hook = hooks  # None: no event is built at all
        self._base_url = base_url
        self._request_source = request_source
        self._urls: dict[str, URL] = {}
        # The request slots: a count in use, and the attempts waiting for one, first in
        # first served, interactive ones first (asyncio.Semaphore costs two coroutines
        # per attempt; and the number of slots changes as the client sizes it).
        self._busy = 0
        self._queued: deque[asyncio.Future[None]] = deque()
        self._queued_first: deque[asyncio.Future[None]] = deque()  # interactive
        self._debug = logging.getLogger(LOGGER_NAME).isEnabledFor
        self._closed = False
        self.confirmed = 0  # credits charged for answers that arrived
        self.uncertain = 0  # credits of requests sent and never answered: maybe charged

    @property
    def max_concurrency(self) -> int:
        return self.concurrency.limit

    async def aclose(self) -> None:
        """Refuse further attempts and release the transport's connections."""
        self._closed = True
        await self.transport.aclose()

    def body(self, params: dict[str, Any]) -> bytes:
        """The JSON body sent for *params*."""
        if self._request_source is not None:
            params = {**params, "requestSource": self._request_source}
        return orjson.dumps(params)

    def url(self, endpoint: Endpoint) -> URL:
        url = self._urls.get(endpoint.name)
        if url is None:
            root = self._base_url.path.rstrip("/")
            url = self._urls[endpoint.name] = self._base_url.with_path(root + endpoint.path)
        return url

    async def call(
        self,
        call: Call,
        parse: Callable[[bytes], T],
        *,
        stop: StopCheck | None = None,
        at_send: StopCheck | None = None,
    ) -> T:
        """Make *call* with retries and return ``parse(body)`` of its 200, or raise the
        DumplingError it ended with. *stop* (bulk jobs) is asked before every attempt,
        and again once it holds its permit; *at_send* only then, the moment before the
        request goes (a write-ahead record)."""
        endpoint = call.endpoint
        body = self.body(call.params)
        cost = self.costs.of(endpoint)
        attempt = 0
        hook = self._hook
        while True:
            attempt += 1
            try:
                return await self._try(call, body, cost, parse, attempt, stop, at_send)
            except DumplingError as error:
                delay = self.retry.delay(error, attempt)
                if delay is None or (call.turn.max_wait is not None and delay > call.turn.max_wait):
                    raise  # (a retry the caller would wait longer for than it allows: its error)
                self.log.info(
                    "retry",
                    endpoint=endpoint.name,
                    target=call.subject,
                    attempt=attempt,
                    delay=round(delay, 3),
                    error=type(error).__name__,
                    status=getattr(error, "status", None),
                )
                if hook is not None:
                    event = _event(RetryEvent, call, attempt=attempt, delay=delay, error=error)
                    hook("on_retry", event)
            await asyncio.sleep(delay)

    async def _try(
        self,
        call: Call,
        body: bytes,
        cost: int,
        parse: Callable[[bytes], T],
        attempt: int,
        stop: StopCheck | None,
        at_send: StopCheck | None,
    ) -> T:
        """One attempt: its price reserved, the request sent, what it cost settled. The
        error it ends with is named after *call* here, for every error the pipeline
        raises, and the hooks hear how it ended before they hear what it cost."""
        progress = Progress()  # the transport's to write
        sent: _Sent | None = None
        charge = Charge.NONE
        reserved = False
        try:
            if stop is not None and (reason := stop()) is not None:
                raise reason
            self._check_wait(call)
            await self.budget.reserve(cost)
            reserved = True
            try:
                sent = await self._send(call, body, attempt, progress, stop, at_send)
            finally:
                # However the attempt ended (cancellation included), how far it got says
                # what it cost.
                charge = charge_of(status=progress.status, went_out=progress.went_out)
            value = self._conclude(call, sent, charge, parse)
        except DumplingError as error:
            call.identify(error)
            if sent is not None and self._hook is not None:
                self._observe(self._hook, call, attempt, sent, progress, error)
            raise
        else:
            if self._hook is not None:
                self._observe(self._hook, call, attempt, sent, progress, None)
            return value
        finally:
            if reserved:
                await self._settle(call, cost, charge)

    def _conclude(self, call: Call, sent: _Sent, charge: Charge, parse: Callable[[bytes], T]) -> T:
        """``parse`` of a 200's body, or raise the error the answer or the failure means."""
        response = sent.outcome
        if isinstance(response, SendFailed):
            # Received and charged or not, the cause keeps its type and message but not
            # its frames, whose locals hold the request headers.
            raise send_error(response, charge) from response.cause
        if response.status != 200:
            info = sent.info
            raise error_for_status(
                response.status,
                response.body,
                reason=response.reason,
                not_found=call.endpoint.not_found,
                headers=dict(response.headers),
                retry_after=info.retry_after if info is not None else None,
                rate_limit=self.limiter.snapshot(),
            )
        # Received and charged: whatever the body holds, it is never sent again.
        return _parse_body(parse, response.body)

    def _observe(
        self,
        hook: HookRunner,
        call: Call,
        attempt: int,
        sent: _Sent,
        progress: Progress,
        error: DumplingError | None,
    ) -> None:
        """Tell the hooks how an attempt that was handed to the transport ended."""
        info, status = sent.info, progress.status or 0
        event = _event(
            ResponseEvent,
            call,
            attempt=attempt,
            status=status,
            elapsed=_waited(sent.started),
            limit=info.limit if info is not None else None,
            remaining=info.remaining if info is not None else None,
            error=error,
        )
        hook("on_response", event)
        if status in (429, 503):
            seconds = info.retry_after if info is not None else None
            hook("on_pause", _event(PauseEvent, call, status=status, seconds=seconds))

    async def _settle(self, call: Call, cost: int, charge: Charge) -> None:
        if charge is Charge.CONFIRMED:
            self.confirmed += cost
        elif charge is Charge.UNCERTAIN:
            self.uncertain += cost
            self.log.warning("maybe_charged", credits=cost)
        if self._hook is not None and charge is not Charge.NONE and cost:
            confirmed = charge is Charge.CONFIRMED
            self._hook("on_credits", _event(CreditsEvent, call, credits=cost, confirmed=confirmed))
        # The budget counts an uncertain charge as spent: it holds against any server.
        await self.budget.settle(cost, charged=charge is not Charge.NONE)

    async def _wait_for_slot(self, *, interactive: bool = False) -> None:
        waiter = asyncio.get_running_loop().create_future()
        (self._queued_first if interactive else self._queued).append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._release_slot()  # handed a slot as it was cancelled: pass it on
            raise

    def _release_slot(self) -> None:
        self._busy -= 1
        self._hand_out()

    def _slots(self, interactive: bool) -> int:
        """The slots a call may use: interactive ones, unless the user set
        max_concurrency (a hard cap), are bounded only by the connection pool, so that a
        web handler waits neither behind a bulk job's requests in flight (each 0.3-5 s)
        nor behind a burst of its own tier's cold misses."""
        sizing = self.concurrency
        return sizing.bound if interactive and sizing.automatic else sizing.limit

    def _hand_out(self) -> None:
        """Give free slots to waiters, interactive ones first, each oldest first."""
        for queued, limit in (
            (self._queued_first, self._slots(True)),
            (self._queued, self._slots(False)),
        ):
            while queued and self._busy < limit:
                waiter = queued.popleft()
                if not waiter.done():  # one that gave up left its future behind
                    self._busy += 1
                    waiter.set_result(None)

    def _left(self, permit: Permit, progress: Progress) -> None:
        """A request left (the transport holds its connection): remember when, and tell
        the limiter if it listens."""
        self._departures.left(progress.left_at)
        if self._departed is not None:
            self._departed(permit)

    def _answered(self, status: int, info: ResponseInfo, started: float) -> None:
        """Size the slots from an answer: its time, and a refusal with quota left."""
        sizing = self.concurrency
        rate = self.limiter.snapshot().refill_rate
        # A refusal with quota left (or with no quota said at all) is not the quota's.
        if status == 503 or (status == 429 and (info.remaining is None or info.remaining > 0)):
            sizing.refused_with_quota_left(rate)
        else:
            sizing.answered(time.monotonic() - started, rate)
            full = self._busy + 1 >= sizing.limit  # this one still holds its slot
            if rate is None and info.remaining and full:
                sizing.quota_left_at_the_cap()  # the slots, not the quota, hold us back
        if self._queued or self._queued_first:
            self._hand_out()  # the size may have grown

    def _check_wait(self, call: Call) -> None:
        """Refuse at once, before anything is reserved, a call that would wait longer
        for the quota than its ``max_wait``."""
        max_wait = call.turn.max_wait
        if max_wait is None or self._lanes is None:
            return
        predicted = self._lanes.predicted_wait(call.turn.priority)
        if max_wait < predicted < float("inf"):
            raise MaxWaitExceededError(max_wait, predicted)

    async def _acquire(self, call: Call) -> Permit:
        """The limiter's permit, in the call's lane and within its ``max_wait`` (a bound on
        the quota's wait, not on the client's own slots); the hooks hear of a wait."""
        turn = call.turn
        started = time.monotonic()
        if self._lanes is not None:
            permit = await self._lanes.acquire(priority=turn.priority, max_wait=turn.max_wait)
        elif turn.max_wait is None:
            permit = await self.limiter.acquire()
        else:
            try:
                async with asyncio.timeout(turn.max_wait) as scope:
                    permit = await self.limiter.acquire()
            except TimeoutError:
                if not scope.expired():
                    raise  # the limiter's own
                raise MaxWaitExceededError(turn.max_wait, None) from None
        waited = _waited(started)
        if self._hook is not None and waited > 0.001:
            self._hook("on_throttle", _event(ThrottleEvent, call, seconds=waited))
        return permit

    async def _send(
        self,
        call: Call,
        body: bytes,
        attempt: int,
        progress: Progress,
        stop: StopCheck | None,
        at_send: StopCheck | None,
    ) -> _Sent:
        """Take a slot and the limiter's permit, hand the request to the transport, and
        tell the limiter (and the sizing) what came back."""
        if self._closed:
            raise ClientClosedError("this AsyncDumplingClient is closed; create a new one")
        interactive = call.turn.priority == "interactive"
        ahead = self._queued_first if interactive else self._queued or self._queued_first
        if self._busy < self._slots(interactive) and not ahead:
            self._busy += 1  # no one waits for a slot when one is free
        else:
            await self._wait_for_slot(interactive=interactive)
        try:
            permit = await self._acquire(call)
            reason = stop() if stop is not None else None
            if reason is None and at_send is not None:
                reason = at_send()
            if reason is not None:
                await self.limiter.settle(permit, _NOT_SENT)
                raise reason
            progress.on_leave = functools.partial(self._left, permit, progress)
            info: ResponseInfo | None = None
            outcome: Response | SendFailed
            started = time.monotonic()
            if self._hook is not None:
                self._hook("on_request", _event(RequestEvent, call, attempt=attempt))
            try:
                try:
                    outcome = await self.transport.post(self.url(call.endpoint), body, progress)
                except SendFailed as failure:
                    outcome = failure.with_traceback(None)
                    if not progress.went_out:
                        info = _NOT_SENT  # it cannot have been counted either
                else:
                    left = progress.left_at
                    # How much longer our own client held it than the others it sent then.
                    late = self._departures.lag(started, left) if left else 0.0
                    info = response_info(outcome.status, outcome.headers, sent_late=late)
                    if self.concurrency.automatic:
                        self._answered(outcome.status, info, started)
            finally:
                await self.limiter.settle(permit, info)
                if self._debug(logging.DEBUG):
                    self.log.debug(
                        "attempt",
                        endpoint=call.endpoint.name,
                        target=call.subject,
                        attempt=attempt,
                        status=progress.status,
                        elapsed=round(time.monotonic() - started, 4),
                        limit=info.limit if info else None,
                        remaining=info.remaining if info else None,
                    )
        finally:
            self._release_slot()
        return _Sent(outcome, info, started)


class _Sent(NamedTuple):
    """An attempt the transport took: its answer or failure, what the answer said of
    the quota, and when it was handed over."""

    outcome: Response | SendFailed
    info: ResponseInfo | None
    started: float


def _takes_turns(limiter: RateLimiter) -> TypeGuard[TakesTurns]:
    """The limiter serves lanes and bounds waits (and a subclass that overrides its
    ``acquire`` still takes them)."""
    if not isinstance(limiter, TakesTurns):
        return False
    parameters = inspect.signature(limiter.acquire).parameters
    return "priority" in parameters and "max_wait" in parameters


def _waited(started: float) -> float:
    return time.monotonic() - started


def _event(cls: Callable[..., E], call: Call, **fields: Any) -> E:
    """A hook event about *call*."""
    return cls(endpoint=call.endpoint.name, target=call.subject, **fields)


def _parse_body(parse: Callable[[bytes], T], data: bytes) -> T:
    try:
        return parse(data)
    except InvalidResponseError as error:
        error.body = data[:KEPT_BODY]
        raise
