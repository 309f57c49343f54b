"""``RedisRateLimiter``: the same quota model as the in-process limiter, its state in
Redis, shared by every worker on one API key.

Each step reads the model and Redis's clock in one round trip, applies the change in
Python (the very code ``AdaptiveRateLimiter`` runs) and writes it back only if no other
worker wrote meanwhile (a compare-and-set in Lua); on a conflict it starts again. One
model, so both limiters follow the same rules, tested once.

If Redis goes away, the limiter logs ``redis_unavailable`` and falls back to a local
``AdaptiveRateLimiter`` (which still re-syncs from the server's headers, so it stays
conservative); it tries Redis again every ``retry_redis_after`` seconds and returns to it
when it answers.
A grant that Redis made for a caller that was cancelled meanwhile is handed back.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import math
import os
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from .._core import state as shared_state
from .._core.log import get_logger
from .._core.quota import QuotaModel, ResponseInfo
from .._core.ratelimit import AdaptiveRateLimiter, Permit
from .._core.turns import Priority, Turns
from .._models import RateLimitState
from ._base import Connection, RedisBacked, key_namespace

__all__ = ["RedisRateLimiter"]

T = TypeVar("T")
_CONFLICTS = 64  # compare-and-set rounds before a step counts as Redis being unusable
_NOT_SENT = ResponseInfo(status=0, limit=None, remaining=None)
# Ends of Redis permits kept while Redis is away, told to it when it is back; beyond
# this many the oldest are dropped (they are forgotten as stale after stale_after).
_MOST_OWED = 10_000

# KEYS: the model. ARGV: the version read, the new state, ttl ms. 1 if written.
_WRITE = """
if (redis.call('HGET', KEYS[1], 'version') or '') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'version', ARGV[2], 'state', ARGV[3])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]))
return 1
"""


# KEYS: the interactive count. ARGV: its linger, ms. Counted; an expiry set if none is.
_COUNT = """
local n = redis.call('INCR', KEYS[1])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1])) end
return n
"""


class _Unusable(Exception):
    """Redis answered, but the state could not be read or written in time."""


class RedisRateLimiter(RedisBacked):
    """The adaptive limiter with its state in Redis, shared by every worker on one key.

    *redis* is a URL or a ``redis.asyncio.Redis``; *api_key* only names the keys (hashed).
    ``stale_after`` should exceed the client's per-attempt timeout: a request in flight
    longer than that is forgotten (its worker crashed). While Redis is away a local
    limiter stands in; Redis is asked again every ``retry_redis_after`` seconds.

    Interactive requests go first in this process, and across processes: the workers
    count in Redis the interactive permits of the last ``interactive_linger`` seconds
    (default: the window), and bulk requests leave that many units and one more free,
    at most ``interactive_share`` of the limit. An idle web tier costs the bulk job
    nothing.
    """

    def __init__(
        self,
        redis: str | aioredis.Redis,
        *,
        api_key: str,
        window: float | None = None,
        stale_after: float = 120.0,
        idle_ttl: float = 600.0,
        upstream_pause: float = 0.5,
        max_pause: float = 60.0,
        poll_interval: float = 0.005,
        retry_redis_after: float = 2.0,
        interactive_share: float = 0.5,
        interactive_linger: float | None = None,
        prefix: str = "dumpling",
    ) -> None:
        if not 0 <= interactive_share < 1 or (
            interactive_linger is not None and not interactive_linger > 0
        ):
            raise ValueError("interactive_share must be in [0, 1), interactive_linger > 0")
        self._conn = Connection(redis)
        self._redis = self._conn.client
        namespace = key_namespace(api_key, prefix)
        self._keys = [f"{namespace}:quota", f"{namespace}:interactive"]
        self._share = interactive_share
        self._linger = interactive_linger
        self._interactive = 0  # interactive permits lately, as of the last step (-1: none)
        self._offset = 0.0  # Redis's clock minus the loop's, as of the last step
        self._guess = window
        self._stale = stale_after
        self._ttl_ms = int(idle_ttl * 1000)
        self._upstream_pause = upstream_pause
        self._max_pause = max_pause
        self._poll = poll_interval
        self._retry_redis = retry_redis_after
        self._write = self._redis.register_script(_WRITE)
        self._count_interactive = self._redis.register_script(_COUNT)
        self._seen: QuotaModel | None = None  # the model as last read, for snapshot()
        self._in_flight = 0
        self._throttled = 0.0
        self._waits = 0
        # The local stand-in while Redis is away; kept after, for its permits in flight.
        self._fallback: AdaptiveRateLimiter | None = None
        self._away = False
        self._retry_at = 0.0
        # Permits Redis granted whose end it has not heard (it was away when they ended):
        # until it does, each holds a unit, and an unanswered probe holds every worker.
        self._owed: collections.deque[tuple[Permit, ResponseInfo | None]] = collections.deque(
            maxlen=_MOST_OWED
        )
        self._turns = Turns()  # this process's pollers, interactive first
        self._background: set[asyncio.Task[Any]] = set()
        self._log = get_logger()

    def __repr__(self) -> str:
        return f"RedisRateLimiter(key={self._keys[0]!r}, fallback={self._away})"

    def snapshot(self) -> RateLimitState:
        if self._away and self._fallback is not None:
            return self._fallback.snapshot()
        model = self._seen
        if model is None:
            return RateLimitState(in_flight=self._in_flight)
        return RateLimitState(
            limit=model.limit,
            remaining=model.remaining,
            window=model.window if model.learned else None,
            refill_rate=model.refill_rate() if model.learned else None,
            in_flight=self._in_flight,
            throttled_seconds=self._throttled,
            throttle_waits=self._waits,
            rate_limited=model.rate_limited,
            state=model.mode.value,
        )

    # -- one step of the shared model -------------------------------------------------
    def _new_model(self) -> QuotaModel:
        return QuotaModel(
            window=self._guess, upstream_pause=self._upstream_pause, max_pause=self._max_pause
        )

    async def _step(
        self, change: Callable[[QuotaModel, float], tuple[bool, T]], *, mark: bool = False
    ) -> T:
        """Apply *change* (which says whether it changed the model) at Redis's clock;
        *mark*: an interactive request is waiting here (bulk work elsewhere leaves it room)."""
        for _ in range(_CONFLICTS):
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.time()
                pipe.hmget(self._keys[0], ["version", "state"])
                if mark:  # counted from now for a linger, if no count is running
                    pipe.set(self._keys[1], b"0", px=self._linger_ms(), nx=True)
                pipe.get(self._keys[1])
                (seconds, micros), (version, raw), *_, lately = await pipe.execute()
            now = seconds + micros / 1e6
            self._offset = now - asyncio.get_running_loop().time()
            self._interactive = -1 if lately is None else _count(lately)
            model = self._load(raw)
            model.expire(now, self._stale)
            changed, result = change(model, now)
            self._seen = model
            if not changed:
                return result
            state = orjson.dumps(shared_state.dump(model))
            new = os.urandom(8).hex()
            args = [version or b"", new, state, self._ttl_ms]
            if int(await self._write(keys=self._keys[:1], args=args)):
                return result
        raise _Unusable("too many workers wrote at once")

    def _load(self, raw: bytes | None) -> QuotaModel:
        if raw is None:
            return self._new_model()
        try:
            return shared_state.load(
                orjson.loads(raw), upstream_pause=self._upstream_pause, max_pause=self._max_pause
            )
        except (orjson.JSONDecodeError, shared_state.StateError):
            # Another version's state, or broken: start afresh (every answer re-syncs).
            self._log.warning("redis_state_unreadable")
            return self._new_model()

    # -- the protocol -----------------------------------------------------------------
    def predicted_wait(self, priority: Priority = "interactive") -> float:
        """How long a request of *priority* asked now would wait, from the shared model
        as last read (other workers' requests since are not in it)."""
        if self._away and self._fallback is not None:
            return self._fallback.predicted_wait(priority)
        model = self._seen
        if model is None:
            return 0.0  # nothing known yet: the first request goes
        now = asyncio.get_running_loop().time() + self._offset
        ahead = self._turns.ahead(priority)
        if priority == "bulk":
            ahead += self._left_to_interactive(model)
        return model.wait(now, ahead + 1)

    def _left_to_interactive(self, model: QuotaModel) -> int:
        """Units a bulk request leaves free: while interactive permits were counted lately,
        that many and one more (the next), at most the interactive share of the limit."""
        if self._interactive < 0 or not model.limit or not self._share:
            return 0
        return min(self._interactive + 1, max(1, math.floor(self._share * model.limit)))

    def _linger_ms(self) -> int:
        """How long interactive permits are counted: the window, unless told otherwise."""
        seen = self._seen.window if self._seen is not None else 1.0
        linger = self._linger if self._linger is not None else min(max(seen, 0.25), 60.0)
        return max(1, int(linger * 1000))

    async def acquire(
        self, *, priority: Priority = "interactive", max_wait: float | None = None
    ) -> Permit:
        if self._away and self._fallback is not None and not await self._back_to_redis():
            return await self._local_acquire(self._fallback, priority, max_wait)
        # One poller per process, interactive first; a bulk one gives way to it.
        attempt = functools.partial(self._poll_for, priority, max_wait)
        predicted = functools.partial(self.predicted_wait, priority)
        return await self._turns.run(priority, max_wait, attempt, predicted)

    def _take_as(self, priority: Priority) -> Callable[[QuotaModel, float], Any]:
        """The step that grants a request of *priority*: a bulk one only if it leaves
        interactive requests their share (as the step read whether any were seen)."""

        def take(model: QuotaModel, now: float) -> tuple[bool, tuple[float, float]]:
            leave = 0 if priority == "interactive" else self._left_to_interactive(model)
            return _take(model, now, leave=leave)

        return take

    async def _poll_for(self, priority: Priority, max_wait: float | None) -> Permit | None:
        """Ask the shared model until it grants; None when a bulk request must give way
        to an interactive one of this process."""
        started = asyncio.get_running_loop().time()
        waited = False
        interactive = priority == "interactive"
        while True:
            if self._away and self._fallback is not None:
                # Redis went away while we queued or polled (another request's step
                # failed): the stand-in decides, as for every other request now.
                return await self._local_acquire(self._fallback, priority, max_wait)
            if not interactive and self._turns.waiting("interactive"):
                return None
            task = asyncio.ensure_future(self._step(self._take_as(priority), mark=interactive))
            try:
                # Shielded: a grant Redis made after we were cancelled is handed back.
                sent, value = await asyncio.shield(task)
            except asyncio.CancelledError:
                task.add_done_callback(self._orphaned)
                raise
            except (RedisError, OSError, _Unusable) as exc:
                return await self._local_acquire(self._fall_back(exc), priority, max_wait)
            if sent:
                break
            if not waited:
                waited = True
                self._waits += 1
            # A probe is out somewhere (inf): its answer may free quota any moment, so
            # look again soon; otherwise sleep until the predicted time.
            await asyncio.sleep(self._poll if math.isinf(value) else min(value, 0.05))
        if waited:
            self._throttled += asyncio.get_running_loop().time() - started
        if interactive:  # counted for bulk work to leave room for the next one
            self._spawn(self._count_interactive(keys=self._keys[1:], args=[self._linger_ms()]))
        self._in_flight += 1
        return Permit(int(value), sent)

    def _orphaned(self, task: asyncio.Future[tuple[float, float]]) -> None:
        if task.cancelled() or task.exception() is not None or not task.result()[0]:
            return
        seq = int(task.result()[1])
        self._spawn(self._step(functools.partial(_answer, seq, _NOT_SENT)))

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._landed)

    def _landed(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._log.warning("redis_unavailable", component="rate_limiter")

    def departed(self, permit: Permit) -> None:
        # Heard only by the local fallback: in Redis, a round trip per request would cost
        # more than the restamp saves.
        if permit.seq < 0 and self._fallback is not None:
            self._fallback.departed(Permit(-permit.seq, permit.sent_at))

    async def settle(self, permit: Permit, response: ResponseInfo | None) -> None:
        if permit.seq < 0:  # granted by the local fallback
            assert self._fallback is not None
            await self._fallback.settle(Permit(-permit.seq, permit.sent_at), response)
            return
        self._in_flight -= 1
        if self._away:
            self._owed.append((permit, response))  # told when Redis is back
            return
        try:
            await asyncio.shield(self._step(functools.partial(_answer, permit.seq, response)))
        except (RedisError, OSError, _Unusable) as exc:
            self._owed.append((permit, response))
            self._fall_back(exc)

    # -- when Redis is away -------------------------------------------------------------
    def _fall_back(self, exc: BaseException) -> AdaptiveRateLimiter:
        if not self._away:
            self._log.warning("redis_unavailable", fallback="local", error=repr(exc)[:200])
            self._away = True
        if self._fallback is None:
            window = self._seen.window if self._seen is not None else self._guess
            window = window if self._seen is None or self._seen.learned else self._guess
            self._fallback = AdaptiveRateLimiter(
                window=window, upstream_pause=self._upstream_pause, max_pause=self._max_pause
            )
        self._retry_at = asyncio.get_running_loop().time() + self._retry_redis
        return self._fallback

    async def _back_to_redis(self) -> bool:
        """While on the fallback, try Redis again now and then; True once it answers."""
        now = asyncio.get_running_loop().time()
        if now < self._retry_at:
            return False
        self._retry_at = now + self._retry_redis
        try:
            await self._redis.ping()
            while self._owed:  # ends that come in meanwhile are owed too: until none is
                owed = list(self._owed)
                self._owed.clear()
                try:
                    await self._step(functools.partial(_answer_owed, owed))
                except BaseException:
                    self._owed.extendleft(reversed(owed))  # told next time (told twice: no harm)
                    raise
        except (RedisError, OSError, _Unusable):
            return False
        self._log.info("redis_available", fallback="left")
        self._away = False  # the fallback's permits in flight still settle with it
        return True

    async def _local_acquire(
        self,
        fallback: AdaptiveRateLimiter,
        priority: Priority = "interactive",
        max_wait: float | None = None,
    ) -> Permit:
        permit = await fallback.acquire(priority=priority, max_wait=max_wait)
        return Permit(-permit.seq, permit.sent_at)  # negative: settled by the fallback


def _count(raw: bytes) -> int:
    """The interactive count as stored (another release's value, or garbage: 0)."""
    try:
        return max(0, int(raw))
    except ValueError:
        return 0


def _take(model: QuotaModel, now: float, *, leave: int = 0) -> tuple[bool, tuple[float, float]]:
    """Grant a request if the model lets one go with *leave* units in hand counted as used
    (what bulk work keeps for interactive requests): (changed, (sent at or 0, seq or wait)).
    Counted, not asked for: while the model tries the window one unit at a time, the
    trial that shows the window's units back may be this request."""
    model.ledger.add(now, leave)
    wait = model.wait(now)
    for _ in range(leave):
        model.ledger.remove(now)
    if wait > 0:
        return False, (0.0, wait)
    return True, (now, float(model.grant(now)))


def _answer(
    seq: int, response: ResponseInfo | None, model: QuotaModel, now: float
) -> tuple[bool, None]:
    if response is not None and response.status == 0:
        model.cancel(seq)
    else:
        model.answer(seq, now, response)
    return True, None


def _answer_owed(
    owed: list[tuple[Permit, ResponseInfo | None]], model: QuotaModel, now: float
) -> tuple[bool, None]:
    """Tell the model how permits it still holds in flight ended while Redis was away.
    A permit is its number and its grant time: the same number in a state since lost
    (Redis restarted empty) is another request, and is left alone."""
    in_flight = model.ledger.in_flight
    known = [(p, response) for p, response in owed if in_flight.get(p.seq) == p.sent_at]
    for permit, response in known:
        if response is not None:  # its waits and resets are long past: not taken as said
            response = attrs.evolve(response, retry_after=None, reset=None)
        _answer(permit.seq, response, model, now)
    return bool(known), None
