"""Single flight across processes: a lookup that another process is already making is
waited for, not paid for again, through a store the processes share (a ``SharedCache``
such as ``dumpling_async.redis.RedisCache``).

Per key, the first caller takes a lease (a lock with an expiry, renewed by the store
while its holder fetches) and makes the request; its answer is handed over through the
store: a 200's body, cached for ``ttl`` when the endpoint may be cached, else kept only
for the handover; a not-found, kept only for the handover (the cache never holds an
error). A caller that finds the lease taken polls the store until the answer is there
or the lease is free again (its holder failed, gave up, or died and the lease expired),
and then takes it. Past ``follow_for`` it stops waiting and fetches itself. So a second
charge comes only after the first request ended without an answer to share, its process
died, or it took longer than ``follow_for``.

A store that fails is the store's business: it answers "nothing there" and "the lease
is yours", so a lookup never fails because its cache did.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol, TypeVar, runtime_checkable

import orjson

from .._errors import DumplingError, NotFoundError
from .endpoints import Call
from .log import get_logger

__all__ = ["SharedCache", "SharedFlights"]

T = TypeVar("T")

# The first byte of a stored value says what it is.
_BODY = b"="  # a 200's body
_NOT_FOUND = b"!"  # a not-found: its message and code, as JSON

_POLL_MOST = 0.05  # a follower's polls grow from the store's poll_interval to this


@runtime_checkable
class SharedCache(Protocol):
    """A store that several processes share: answers by key, and one lease per key.

    ``read`` gives what is kept for *key* (a cached answer, or one handed over by the
    lookup that just ended), ``write`` keeps a value (``keep``: as the cache, for its
    TTL; else only for the handover), ``lease`` is an async context manager that yields
    True when this caller holds *key*'s lease (renewed while held, released on exit).
    A store that cannot reach its backend answers None, does nothing and yields True.
    """

    poll_interval: float
    follow_for: float

    async def read(self, key: str) -> bytes | None: ...

    async def write(self, key: str, value: bytes, *, keep: bool) -> None: ...

    def lease(self, key: str) -> AbstractAsyncContextManager[bool]: ...


class SharedFlights:
    """One client's side of single flight across processes, over *store*."""

    def __init__(self, store: SharedCache) -> None:
        self.store = store
        self._log = get_logger()

    def __repr__(self) -> str:
        return f"SharedFlights({self.store!r})"

    async def run(
        self,
        call: Call,
        fetch: Callable[[], Awaitable[tuple[T, bytes]]],
        parse: Callable[[bytes], T],
    ) -> T:
        """The call's value: handed over by another process, or fetched here (``fetch``
        returns the value and the body it was parsed from)."""
        store = self.store
        key = _key(call)
        loop = asyncio.get_running_loop()
        give_up = loop.time() + store.follow_for
        delay = store.poll_interval
        while True:
            if (value := await self._handed_over(call, key, parse)) is not None:
                return value
            async with store.lease(key) as held:
                if held:
                    # The last holder may have handed over between the read and the lease.
                    if (value := await self._handed_over(call, key, parse)) is not None:
                        return value
                    return await self._lead(call, key, fetch)
            if loop.time() >= give_up:
                self._log.warning("shared_flight_gave_up", endpoint=call.endpoint.name)
                return await self._lead(call, key, fetch)
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, max(_POLL_MOST, store.poll_interval))

    async def _lead(
        self, call: Call, key: str, fetch: Callable[[], Awaitable[tuple[T, bytes]]]
    ) -> T:
        """Fetch while holding the lease, and hand the answer over."""
        try:
            value, body = await fetch()
        except NotFoundError as error:
            if error.status == 404:
                note = orjson.dumps({"message": error.message, "code": error.code})
                await self.store.write(key, _NOT_FOUND + note, keep=False)
            raise
        await self.store.write(key, _BODY + body, keep=call.endpoint.cacheable)
        return value

    async def _handed_over(self, call: Call, key: str, parse: Callable[[bytes], T]) -> T | None:
        """What the store holds for *key*: the value, or its not-found raised; None when
        nothing is there or it cannot be read (another release wrote it, or it is broken)."""
        found = await self.store.read(key)
        if found is None:
            return None
        tag, data = found[:1], found[1:]
        try:
            if tag == _BODY:
                return parse(data)
            if tag == _NOT_FOUND:
                note = orjson.loads(data)
                message, code = str(note["message"]), note.get("code")
            else:
                raise ValueError(f"unknown tag {tag!r}")
        except (ValueError, TypeError, KeyError, DumplingError) as exc:
            self._log.warning("shared_cache_unreadable", error=type(exc).__name__)
            return None
        error = call.endpoint.not_found(message, status=404, code=code if code else None)
        raise call.identify(error)


def _key(call: Call) -> str:
    """The store's name for what *call* asks (the store hashes it)."""
    endpoint, subject = call.key
    return f"{endpoint}\n{subject}"
