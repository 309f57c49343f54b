"""An optional in-memory TTL cache of profiles.

Every lookup costs credits, so a web backend that sees the same handles again may want
to reuse a recent answer. Off by default: a cached profile can be up to ``ttl`` seconds
stale. Bounded in entries; the least recently used entry goes first.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from .._models import TikTokProfile

__all__ = ["ProfileCache"]


class ProfileCache:
    """Keeps up to *max_entries* profiles for *ttl* seconds each."""

    def __init__(
        self,
        *,
        max_entries: int = 10_000,
        ttl: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1 or ttl <= 0:
            raise ValueError("max_entries must be >= 1 and ttl > 0")
        self._max = max_entries
        self._ttl = ttl
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, TikTokProfile]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __repr__(self) -> str:
        return (
            f"ProfileCache(entries={len(self._entries)}, max_entries={self._max}, ttl={self._ttl})"
        )

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, handle: str) -> TikTokProfile | None:
        """The cached profile for a normalised handle, if fresh."""
        entry = self._entries.get(handle)
        if entry is None or entry[0] <= self._clock():
            if entry is not None:
                del self._entries[handle]
            self.misses += 1
            return None
        self._entries.move_to_end(handle)
        self.hits += 1
        return entry[1]

    def put(self, handle: str, profile: TikTokProfile) -> None:
        """Remember a profile for ``ttl`` seconds."""
        self._entries[handle] = (self._clock() + self._ttl, profile)
        self._entries.move_to_end(handle)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget everything."""
        self._entries.clear()
