"""``RedisCache``: answers and single flight shared by every worker on one API key.

Keys live under a hash of the API key (as the limiter's do), each named after a hash of
what was asked: ``<ns>:cache:<h>`` (a 200's body, for ``ttl``), ``<ns>:handover:<h>``
(an answer kept only for the lookups waiting on it, for ``handover``) and
``<ns>:lease:<h>`` (the lock of the worker fetching it, a random token that expires
after ``lease`` seconds unless its holder renews it). Bodies are stored as their bytes,
compressed with zlib past ``compress_over`` bytes; one over ``max_entry_bytes`` is not
cached. Every operation is bounded by ``op_timeout``: a Redis that is down or slow is
skipped (``cache_unavailable`` is logged once, ``cache_available`` when it answers
again) and the lookup goes on as if uncached; while it is away, Redis is asked again
only every ``retry_redis_after`` seconds, so an outage adds no wait to each lookup.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import secrets
import zlib
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from .._core.log import get_logger
from ._base import Connection, RedisBacked, key_namespace

__all__ = ["RedisCache"]

T = TypeVar("T")

_PLAIN, _ZLIB = b"p", b"z"  # how a stored value is encoded
_MOST_INFLATED = 16 * 1024 * 1024  # a compressed value never inflates past this

# KEYS: the lease. ARGV: the token, ttl ms. 1 if the caller still holds it.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
end
return 0
"""
# KEYS: the lease. ARGV: the token.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisCache(RedisBacked):
    """A cache and single flight shared through Redis by every process on one API key.

    Pass it as the client's ``cache=``. *redis* is a URL or a ``redis.asyncio.Redis``
    (one lent must not decode responses: values are bytes);
    *api_key* only names the keys (hashed). ``ttl``: how long a profile is reused
    (seconds). ``lease``: how long a worker that died mid-request holds up the others;
    its holder renews it every third of that. ``follow_for``: how long a lookup waits
    for another worker's answer before it fetches itself (more than the client's
    ``timeout`` times its attempts, so that it does not pay while the first may still be
    answered). ``handover``: how long an answer that is not cached stays for those
    waiting on it.
    """

    def __init__(
        self,
        redis: str | aioredis.Redis,
        *,
        api_key: str,
        ttl: float = 300.0,
        lease: float = 10.0,
        follow_for: float = 120.0,
        handover: float = 10.0,
        poll_interval: float = 0.005,
        op_timeout: float = 0.25,
        retry_redis_after: float = 2.0,
        max_entry_bytes: int = 1024 * 1024,
        compress_over: int = 1024,
        prefix: str = "dumpling",
    ) -> None:
        for name, value in (
            ("ttl", ttl),
            ("lease", lease),
            ("follow_for", follow_for),
            ("handover", handover),
            ("poll_interval", poll_interval),
            ("op_timeout", op_timeout),
            ("retry_redis_after", retry_redis_after),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be > 0 seconds")
        self._conn = Connection(redis)
        self._redis = self._conn.client
        self._ns = key_namespace(api_key, prefix)
        self._keys = [f"{self._ns}:cache:*", f"{self._ns}:handover:*", f"{self._ns}:lease:*"]
        self._ttl_ms = max(1, int(ttl * 1000))
        self._lease_ms = max(1, int(lease * 1000))
        self._handover_ms = max(1, int(handover * 1000))
        self.follow_for = follow_for
        self.poll_interval = poll_interval
        self._op_timeout = op_timeout
        self._retry_redis = retry_redis_after
        self._retry_at = 0.0  # while away: when Redis is asked again
        self._max_entry = max_entry_bytes
        self._compress_over = compress_over
        self._renew = self._redis.register_script(_RENEW)
        self._release = self._redis.register_script(_RELEASE)
        self._away = False
        self.hits = 0  # answers read from Redis (cached or handed over)
        self.misses = 0
        self._log = get_logger()

    def __repr__(self) -> str:
        return f"RedisCache(namespace={self._ns!r}, away={self._away})"

    # -- the SharedCache protocol -------------------------------------------------------
    async def read(self, key: str) -> bytes | None:
        name = self._name(key)
        found = await self._op(
            self._redis.mget(f"{self._ns}:cache:{name}", f"{self._ns}:handover:{name}")
        )
        value = None
        if found is not None:
            value = next((item for item in found if item is not None), None)
        if value is None:
            self.misses += 1
            return None
        decoded = self._decode(value)
        if decoded is None:
            self.misses += 1
        else:
            self.hits += 1
        return decoded

    async def write(self, key: str, value: bytes, *, keep: bool) -> None:
        name = self._name(key)
        encoded = self._encode(value)
        if keep and len(encoded) > self._max_entry:
            keep = False  # too big to cache: handed over only
        kind, ttl = ("cache", self._ttl_ms) if keep else ("handover", self._handover_ms)
        await self._op(self._redis.set(f"{self._ns}:{kind}:{name}", encoded, px=ttl))

    @contextlib.asynccontextmanager
    async def lease(self, key: str) -> AsyncIterator[bool]:
        lease = f"{self._ns}:lease:{self._name(key)}"
        token = secrets.token_hex(16)
        taken = await self._op(self._redis.set(lease, token, px=self._lease_ms, nx=True), True)
        if not taken:
            yield False
            return
        renewing = asyncio.get_running_loop().create_task(self._keep(lease, token))
        try:
            yield True
        finally:
            renewing.cancel()
            await asyncio.shield(self._op(self._release(keys=[lease], args=[token])))

    async def clear(self) -> None:
        """Forget every cached answer of this API key (leases and handovers too; the
        limiter's and the budget's keys are left alone)."""
        names = [name for pattern in self._keys async for name in self._redis.scan_iter(pattern)]
        if names:
            await self._redis.delete(*names)

    # -- internals ----------------------------------------------------------------------
    async def _keep(self, lease: str, token: str) -> None:
        """Renew the lease while its holder fetches."""
        while True:
            await asyncio.sleep(self._lease_ms / 3000)
            await self._op(self._renew(keys=[lease], args=[token, self._lease_ms]))

    async def _op(self, operation: Awaitable[T], default: Any = None) -> Any:
        """Run one Redis operation within ``op_timeout``; *default* if Redis fails, or is
        away and not due to be asked again yet."""
        now = asyncio.get_running_loop().time()
        if self._away and now < self._retry_at:
            if inspect.iscoroutine(operation):
                operation.close()  # never awaited: not an error
            return default
        try:
            async with asyncio.timeout(self._op_timeout):
                result = await operation
        except (RedisError, OSError, TimeoutError) as exc:
            self._retry_at = now + self._retry_redis
            if not self._away:
                self._away = True
                self._log.warning("cache_unavailable", error=repr(exc)[:200])
            return default
        if self._away:
            self._away = False
            self._log.info("cache_available")
        return result

    def _name(self, key: str) -> str:
        return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()

    def _encode(self, value: bytes) -> bytes:
        if len(value) > self._compress_over:
            return _ZLIB + zlib.compress(value, 1)
        return _PLAIN + value

    def _decode(self, stored: bytes) -> bytes | None:
        """A stored value's bytes; None when it is not one of ours or inflates too far."""
        tag, data = stored[:1], stored[1:]
        if tag == _PLAIN:
            return data
        if tag == _ZLIB:
            inflate = zlib.decompressobj()
            try:
                value = inflate.decompress(data, _MOST_INFLATED)
            except zlib.error:
                return None
            return None if inflate.unconsumed_tail or not inflate.eof else value
        return None
