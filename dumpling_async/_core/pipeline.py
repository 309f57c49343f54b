"""One request, start to finish: budget -> slot -> limiter -> send -> read -> classify ->
retry -> parse.

Every endpoint, single lookups, bulk jobs and listings alike, goes through
:meth:`Pipeline.call`. What a failed attempt means (charged, retried, stops a batch) is
decided in ``fate``; the pipeline only applies it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from yarl import URL

from .._errors import ClientClosedError, DumplingError, InvalidResponseError
from .budget import CreditBudget
from .concurrency import Concurrency
from .endpoints import Call, CreditCosts, Endpoint
from .fate import (
    TRANSPORT_ERRORS,
    Charge,
    charge_of,
    error_for_status,
    scrubbed,
    transport_error,
)
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
from .ratelimit import Permit, RateLimiter, ResponseInfo
from .retry import RetryPolicy
from .transport import Exchange, Transport

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
        # first served (asyncio.Semaphore costs two coroutines per attempt; and the
        # number of slots changes as the client sizes it).
        self._busy = 0
        self._queued: deque[asyncio.Future[None]] = deque()
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
        self, call: Call, parse: Callable[[bytes], T], *, stop: StopCheck | None = None
    ) -> T:
        """Make *call* with retries and return ``parse(body)`` of its 200, or raise the
        DumplingError it ended with. *stop* (bulk jobs) is asked before every attempt."""
        endpoint = call.endpoint
        body = self.body(call.params)
        cost = self.costs.of(endpoint)
        attempt = 0
        hook = self._hook
        while True:
            attempt += 1
            if stop is not None and (reason := stop()) is not None:
                raise reason
            await self.budget.reserve(cost)
            exchange = Exchange()
            try:
                data = await self._attempt(call, body, attempt, exchange, stop)
                # Received and charged: whatever the body holds, it is never sent again.
                value = _parse_body(parse, data)
                if hook is not None:
                    self._observe(hook, call, attempt, exchange, None)
                return value
            except DumplingError as error:
                if hook is not None:
                    self._observe(hook, call, attempt, exchange, error)
                delay = self.retry.delay(error, attempt)
                if delay is None:
                    raise
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
            finally:
                # However the attempt ended (cancellation included), how far it got says
                # what it cost.
                charge = charge_of(status=exchange.status, sent=exchange.sent)
                await self._settle(call, cost, charge)
            await asyncio.sleep(delay)

    def _observe(
        self,
        hook: HookRunner,
        call: Call,
        attempt: int,
        exchange: Exchange,
        error: DumplingError | None,
    ) -> None:
        """Tell the hooks how an attempt that was handed to the transport ended."""
        if not exchange.started:
            return  # stopped before it was sent: nothing to report but the error raised
        info = exchange.info
        event = _event(
            ResponseEvent,
            call,
            attempt=attempt,
            status=exchange.status,
            elapsed=_waited(exchange.started),
            limit=info.limit if info is not None else None,
            remaining=info.remaining if info is not None else None,
            error=error,
        )
        hook("on_response", event)
        if exchange.status in (429, 503):
            seconds = info.retry_after if info is not None else None
            hook("on_pause", _event(PauseEvent, call, status=exchange.status, seconds=seconds))

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

    async def _wait_for_slot(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._queued.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._release_slot()  # handed a slot as it was cancelled: pass it on
            raise

    def _release_slot(self) -> None:
        self._busy -= 1
        self._hand_out()

    def _hand_out(self) -> None:
        """Give free slots to waiters, oldest first."""
        queued, limit = self._queued, self.concurrency.limit
        while queued and self._busy < limit:
            waiter = queued.popleft()
            if not waiter.done():  # one that gave up left its future behind
                self._busy += 1
                waiter.set_result(None)

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
        if self._queued:
            self._hand_out()  # the size may have grown

    async def _acquire(self, call: Call) -> Permit:
        """The limiter's permit; the hooks hear of a wait."""
        if self._hook is None:
            return await self.limiter.acquire()
        started = time.monotonic()
        permit = await self.limiter.acquire()
        waited = _waited(started)
        if waited > 0.001:
            self._hook("on_throttle", _event(ThrottleEvent, call, seconds=waited))
        return permit

    async def _attempt(
        self, call: Call, body: bytes, attempt: int, exchange: Exchange, stop: StopCheck | None
    ) -> bytes:
        """Send once; the 200 body, or raise the error the response or failure means."""
        if self._closed:
            raise ClientClosedError("this AsyncDumplingClient is closed; create a new one")
        if self._busy < self.concurrency.limit and not self._queued:
            self._busy += 1  # no one waits for a slot when one is free
        else:
            await self._wait_for_slot()
        try:
            permit = await self._acquire(call)
            if stop is not None and (reason := stop()) is not None:
                await self.limiter.settle(permit, _NOT_SENT)
                raise reason
            info: ResponseInfo | None = None
            started = exchange.started = time.monotonic()
            if self._hook is not None:
                self._hook("on_request", _event(RequestEvent, call, attempt=attempt))
            try:
                response = await self.transport.post(self.url(call.endpoint), body, exchange)
                status, headers = response.status, response.headers
                info = exchange.info = response_info(status, headers)
                if self.concurrency.automatic:
                    self._answered(status, info, started)
            except TRANSPORT_ERRORS as exc:
                # The cause keeps its type and message but not its frames, whose locals
                # hold the request headers.
                error = transport_error(
                    exc, call.subject, call.handle, status=exchange.status, sent=exchange.sent
                )
                # A failure before the request left (refused, DNS) cannot have cost anything.
                exchange.sent = error.maybe_charged or exchange.status != 0
                if not exchange.sent:
                    info = _NOT_SENT
                raise error from scrubbed(exc)
            except DumplingError as error:  # the transport refused the body (size cap)
                error.target, error.handle = call.subject, call.handle
                raise
            finally:
                await self.limiter.settle(permit, info)
                if self._debug(logging.DEBUG):
                    self.log.debug(
                        "attempt",
                        endpoint=call.endpoint.name,
                        target=call.subject,
                        attempt=attempt,
                        status=exchange.status or None,
                        elapsed=round(time.monotonic() - started, 4),
                        limit=info.limit if info else None,
                        remaining=info.remaining if info else None,
                    )
        finally:
            self._release_slot()
        if status == 200:
            return response.body
        raise error_for_status(
            status,
            response.body,
            reason=response.reason,
            handle=call.handle,
            target=call.subject,
            not_found=call.endpoint.not_found,
            headers=dict(headers),
            retry_after=info.retry_after,
            rate_limit=self.limiter.snapshot(),
        )


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
