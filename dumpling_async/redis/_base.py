"""What the Redis-backed objects share: key names derived from the API key, and the
connection (made from a URL and closed by us, or lent by the caller)."""

from __future__ import annotations

import hashlib
from typing import Self

import redis.asyncio as aioredis

__all__ = ["Connection", "RedisBacked", "key_namespace"]


def key_namespace(api_key: str, prefix: str = "dumpling") -> str:
    """The Redis key prefix for one API key: a hash of it, never the key itself."""
    digest = hashlib.sha256(b"dumpling-async:" + api_key.encode()).hexdigest()[:24]
    return f"{prefix}:{digest}"


class Connection:
    """A Redis client made from a URL (and then closed by us) or lent by the caller."""

    def __init__(self, redis: str | aioredis.Redis) -> None:
        self.owned = isinstance(redis, str)
        self.client = aioredis.Redis.from_url(redis) if isinstance(redis, str) else redis

    async def aclose(self) -> None:
        if self.owned:
            await self.client.aclose()


class RedisBacked:
    """What both Redis-backed objects share: their keys and their connection."""

    _conn: Connection
    _keys: list[str]

    @property
    def keys(self) -> list[str]:
        """The Redis keys this object uses (all under a hash of the API key)."""
        return list(self._keys)

    async def aclose(self) -> None:
        """Close the Redis connection if it was made from a URL."""
        await self._conn.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
