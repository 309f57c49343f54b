"""A discrete-event simulation of a bulk job: the quota model against the fake server's
rate-limit algorithms, on a simulated clock (no sockets, no sleeping), with time in
transit.

- A request reaches the server's limiter ``Network.to_server`` after it is sent (one
  delay per run, 10-150 ms on real networks) plus jitter (exponential, mean
  ``Network.jitter``, so requests overtake each other), and is counted there.
- Its answer comes ``Network.answer`` later (an ``AnswerTime``: 0.5-1.5 x the mean, with
  a heavy tail if asked), so answers arrive out of order and describe the past.
- The server's headers are rendered as the fake server renders them (``headers``: a reset
  form of ``RESET_HEADERS``; ``retry_after``: ``"ms"`` (Retry-After-Ms), ``"up"`` (whole
  seconds, rounded up), ``"down"`` (floored, often 0) or ``"none"``) and read by the
  client's own header parser, on a wall clock that is the simulated one plus an epoch.
- The job sends as many as the model's chosen concurrency (or a fixed one) allows; a 429
  is retried after its Retry-After, as the client's retry policy does, at most
  ``attempts`` times in all (a lookup that runs out is lost, as a RateLimitError).
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable
from typing import Any, Literal

import attrs
from multidict import CIMultiDict

from dumpling_async._core.headers import response_info
from dumpling_async._core.quota import QuotaModel, ResponseInfo
from dumpling_async.testing import AnswerTime, RateLimitRule
from dumpling_async.testing._headers import Quota, rate_limit_headers, retry_after_headers
from dumpling_async.testing._quota import Window

RetryAfter = Literal["ms", "up", "down", "none"]
EPOCH = 1_750_000_000.0  # the simulated wall clock's time of day at simulated time 0


@attrs.frozen(kw_only=True)
class Network:
    """Time in transit: to the server's limiter, and from its count to the answer."""

    to_server: float = 0.05
    jitter: float = 0.002
    answer: AnswerTime = attrs.field(factory=lambda: AnswerTime(mean=0.0))
    # A busy client: each request leaves up to this long after its permit (uniform); the
    # client tells its limiter when it leaves (``left``) unless *departures* is off, and
    # with its answer how late it left (``sent_late``); *blind*: neither.
    send_lag: float = 0.0
    departures: bool = True
    blind: bool = False

    def __str__(self) -> str:
        return f"to_server={self.to_server}s answer={self.answer.mean}s"


@attrs.frozen
class Outcome:
    elapsed: float  # until the last answer
    requests: int
    rate_limited: int
    lost: int  # lookups that ran out of attempts
    max_in_flight: int
    model: QuotaModel
    mean_answer: float
    last_send: float  # when the last request was sent

    @property
    def share_429(self) -> float:
        return self.rate_limited / self.requests

    def efficiency(self, handles: int, rule: RateLimitRule) -> float:
        """(ideal + mean answer time) / (last send + mean answer time), the free first
        window not counted: the last answer's own time (a slow one in a heavy tail) is no
        loss of the client's."""
        refill = rule.refill if rule.refill is not None else rule.limit
        ideal = max(0, handles - rule.limit) / (refill / rule.window)
        return (ideal + self.mean_answer) / (self.last_send + self.mean_answer)


def render(
    status: int,
    window: Window,
    at: float,
    *,
    reset: str,
    retry_after: RetryAfter,
    wait: float,
) -> dict[str, str]:
    """The headers of one answer, computed at its count time *at* (a wall time)."""
    quota = Quota(window.limit, window.remaining(at), window.reset_after(at), window.rule.window)
    headers = rate_limit_headers(reset, quota, wall=at)  # type: ignore[arg-type]
    if status == 429 and retry_after != "none":
        if retry_after == "ms":
            headers.update(retry_after_headers(wait, ms=True))
        else:
            headers.update(retry_after_headers(wait, ms=False, rounding=retry_after))
    return headers


def simulate(
    rule: RateLimitRule,
    *,
    handles: int = 600,
    seed: int = 0,
    network: Network = Network(),
    reset: str = "none",
    retry_after: RetryAfter = "ms",
    concurrency: int | Callable[[QuotaModel], int] = 256,
    guess: float | None = None,
    attempts: int = 3,
    change: tuple[int, int] | None = None,  # (after this many answers, the new limit)
    phase: float | None = None,  # where in an aligned window the job starts (0-1)
    model: QuotaModel | None = None,
    hold: dict[int, float] | None = None,  # arrival number -> its answer time (a slow one)
) -> Outcome:
    rng = random.Random(seed)
    start_phase = rng.random() if phase is None else phase
    epoch = EPOCH - (EPOCH % rule.window) + start_phase * rule.window
    server: Window | None = None
    model = model or QuotaModel(window=guess, upstream_pause=0.5, max_pause=60.0)
    events: list[tuple[float, int, str, Any]] = []
    order = [0]

    def push(at: float, kind: str, data: Any = None) -> None:
        order[0] += 1
        heapq.heappush(events, (at, order[0], kind, data))

    todo: list[tuple[float, int, int]] = [(0.0, i, 1) for i in range(handles)]
    heapq.heapify(todo)
    busy = requests = limited = answers = lost = most = arrived = 0
    last = now = last_send = 0.0
    answer_times: list[float] = []
    woken_at = math.inf

    def width() -> int:
        return concurrency if isinstance(concurrency, int) else concurrency(model)

    def dispatch() -> None:
        nonlocal busy, requests, woken_at, most, last_send
        while busy < width() and todo:
            ready_at, item, attempt = todo[0]
            if ready_at > now:
                push(ready_at, "wake")
                return
            wait = model.wait(now)
            if wait > 0:
                if math.isfinite(wait) and now + wait < woken_at:
                    woken_at = now + wait
                    push(woken_at, "wake")
                return
            heapq.heappop(todo)
            seq = model.grant(now)
            last_send = now
            busy, requests = busy + 1, requests + 1
            most = max(most, busy)
            late = rng.uniform(0.0, network.send_lag) if network.send_lag else 0.0
            delay = late + network.to_server + rng.expovariate(1 / network.jitter)
            push(now + delay, "arrive", (item, attempt, seq, late))
            if late and network.departures and not network.blind:
                push(now + late, "leave", seq)

    push(0.0, "wake")
    while events:
        now, _, kind, data = heapq.heappop(events)
        if kind == "wake":
            if now >= woken_at:
                woken_at = math.inf
        elif kind == "leave":
            model.left(data, now)
        elif kind == "arrive":
            item, attempt, seq, late = data
            arrived += 1
            wall = epoch + now
            if server is None:
                server = Window(rule, wall)
            wait = server.take(wall)
            status = 200 if wait is None else 429
            headers = render(
                status, server, wall, reset=reset, retry_after=retry_after, wait=wait or 0.0
            )
            took = network.answer.sample(rng)
            if hold and arrived in hold:
                took = hold[arrived]
            answer_times.append(took)
            push(now + took, "answer", (item, attempt, seq, status, headers, late))
            continue
        else:
            item, attempt, seq, status, headers, late = data
            busy, answers, last = busy - 1, answers + 1, now
            told = 0.0 if network.blind else late
            info: ResponseInfo = response_info(
                status, CIMultiDict(headers), wall=epoch + now, sent_late=told
            )
            model.answer(seq, now, info)
            if status == 429:
                limited += 1
                if attempt >= attempts:
                    lost += 1
                else:
                    delay = info.retry_after if info.retry_after is not None else 0.5
                    heapq.heappush(todo, (now + delay, item, attempt + 1))
            if change is not None and answers == change[0]:
                assert server is not None
                server.set_limit(change[1])
        dispatch()
    assert not todo, "the simulated job stalled"
    mean = sum(answer_times) / len(answer_times) if answer_times else 0.0
    return Outcome(
        elapsed=last,
        requests=requests,
        rate_limited=limited,
        lost=lost,
        max_in_flight=most,
        model=model,
        mean_answer=mean,
        last_send=last_send,
    )
