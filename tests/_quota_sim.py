"""A discrete-event simulation of a bulk job: the quota model against the fake server's
rate-limit algorithms, on a simulated clock (no sockets, no sleeping).

Each request reaches the server 0.3-2 ms after it is sent and its answer comes back 1-4
ms later, so requests overtake each other as they do on a network; 16 are in flight at
most; a 429 is retried after its Retry-After.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable
from typing import Any

import attrs

from dumpling_async._core.quota import QuotaModel, ResponseInfo
from dumpling_async.testing import RateLimitRule
from dumpling_async.testing._quota import Window

Headers = Callable[[int, int, int, float, float], ResponseInfo]  # status, L, R, RA, reset


@attrs.frozen
class Outcome:
    elapsed: float  # until the last answer
    requests: int
    rate_limited: int
    model: QuotaModel

    @property
    def share_429(self) -> float:
        return self.rate_limited / self.requests

    def efficiency(self, handles: int, rule: RateLimitRule) -> float:
        """Ideal over actual, the free first window not counted."""
        ideal = (handles - rule.limit) / (rule.limit / rule.window)
        return ideal / self.elapsed


def precise(status: int, limit: int, remaining: int, wait: float, reset: float) -> ResponseInfo:
    """The fake server's headers: Limit, Remaining and a millisecond Retry-After."""
    return ResponseInfo(
        status=status,
        limit=limit,
        remaining=remaining,
        retry_after=round(wait, 3) if status == 429 else None,
    )


def whole_seconds(
    status: int, limit: int, remaining: int, wait: float, reset: float
) -> ResponseInfo:
    """As many real servers: Retry-After in whole seconds, rounded up."""
    return ResponseInfo(
        status=status,
        limit=limit,
        remaining=remaining,
        retry_after=float(math.ceil(wait)) if status == 429 else None,
        retry_after_rounded=status == 429,
    )


def with_reset(status: int, limit: int, remaining: int, wait: float, reset: float) -> ResponseInfo:
    """Limit, Remaining and X-RateLimit-Reset (seconds), plus Retry-After on a 429."""
    info = precise(status, limit, remaining, wait, reset)
    return attrs.evolve(info, reset=round(reset, 3))


def simulate(
    rule: RateLimitRule,
    *,
    handles: int = 600,
    seed: int = 0,
    headers: Headers = precise,
    concurrency: int = 16,
    guess: float = 0.25,
    change: tuple[int, int] | None = None,  # (after this many answers, the new limit)
) -> Outcome:
    rng = random.Random(seed)
    server = Window(rule, -rng.uniform(0, rule.window))  # a random phase
    model = QuotaModel(window=guess, upstream_pause=0.5, max_pause=60.0)
    events: list[tuple[float, int, str, Any]] = []
    order = [0]

    def push(at: float, kind: str, data: Any = None) -> None:
        order[0] += 1
        heapq.heappush(events, (at, order[0], kind, data))

    todo: list[tuple[float, int]] = [(0.0, i) for i in range(handles)]  # (ready at, id)
    busy = requests = limited = answers = 0
    last = now = 0.0
    woken_at = math.inf

    def dispatch() -> None:
        nonlocal busy, requests, woken_at
        while busy < concurrency and todo:
            todo.sort()
            ready_at, item = todo[0]
            if ready_at > now:
                push(ready_at, "wake")
                return
            wait = model.wait(now)
            if wait > 0:
                if math.isfinite(wait) and now + wait < woken_at:
                    woken_at = now + wait
                    push(woken_at, "wake")
                return
            todo.pop(0)
            seq = model.grant(now)
            busy, requests = busy + 1, requests + 1
            push(now + rng.uniform(0.0003, 0.002), "arrive", (item, seq))

    push(0.0, "wake")
    while events:
        now, _, kind, data = heapq.heappop(events)
        if kind == "wake":
            if now >= woken_at:
                woken_at = math.inf
        elif kind == "arrive":
            item, seq = data
            wait = server.take(now)
            status = 200 if wait is None else 429
            info = headers(
                status, server.limit, server.remaining(now), wait or 0.0, server.reset_after(now)
            )
            push(now + rng.uniform(0.001, 0.004), "answer", (item, seq, info))
            continue
        else:
            item, seq, info = data
            busy, answers, last = busy - 1, answers + 1, now
            model.answer(seq, now, info)
            if info.status == 429:
                limited += 1
                todo.append((now + (info.retry_after or 0.0), item))
            if change is not None and answers == change[0]:
                server.set_limit(change[1])
        dispatch()
    assert not todo, "the simulated job stalled"
    return Outcome(elapsed=last, requests=requests, rate_limited=limited, model=model)
