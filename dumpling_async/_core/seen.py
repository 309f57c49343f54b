"""The keys a bulk run has seen, in 20 bytes each (about 25 of memory), whatever their
length.

A run over ten million handles must remember every one (a repeat is never paid for
twice), but not the handles themselves: a dict of strings costs 126-137 bytes a key. Each key
is kept as its 16-byte BLAKE2b digest (two keys sharing one is not a practical risk:
under 1 in 10^24 for ten million) with the position it was first seen at.

The digests are split into shards by their first bits; each shard is three parallel
``array`` columns (the digest's halves and the position) kept sorted, so a lookup is a
``bisect`` and an insert an ``array.insert``, both in C. A shard stays small (a few
thousand entries at ten million keys), so an insert moves a few kilobytes, never the
whole set, and nothing ever rehashes or merges in one long pause of the event loop.
"""

from __future__ import annotations

import bisect
import hashlib
from array import array

__all__ = ["SeenKeys"]

# 4096 shards: at ten million keys ~2,400 entries each (an insert moves ~20 KB); an empty
# run costs one list of 4096 Nones per column.
_SHARD_BITS = 12
_SHIFT = 64 - _SHARD_BITS
# Positions fit in 4 bytes until a run passes four billion inputs; a shard that sees a
# larger one widens its column to 8.
_NARROW_MAX = 0xFFFFFFFF


def _digest(key: str) -> tuple[int, int]:
    raw = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    return int.from_bytes(raw[:8], "big"), int.from_bytes(raw[8:], "big")


class SeenKeys:
    """A set of string keys, each with the position it was first added at."""

    __slots__ = ("_at", "_hi", "_len", "_lo")

    def __init__(self) -> None:
        shards = 1 << _SHARD_BITS
        self._hi: list[array[int] | None] = [None] * shards
        self._lo: list[array[int] | None] = [None] * shards
        self._at: list[array[int] | None] = [None] * shards
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def get(self, key: str) -> int | None:
        """The position *key* was first added at, or None if it never was."""
        hi, lo = _digest(key)
        shard = hi >> _SHIFT
        his, los, ats = self._hi[shard], self._lo[shard], self._at[shard]
        if his is None or los is None or ats is None:
            return None
        i = bisect.bisect_left(his, hi)
        while i < len(his) and his[i] == hi:  # the first halves of two digests can match
            if los[i] == lo:
                return ats[i]
            i += 1
        return None

    def add(self, key: str, position: int) -> bool:
        """Remember *key* as first seen at *position*; False (and nothing changes) if it
        was seen before."""
        hi, lo = _digest(key)
        shard = hi >> _SHIFT
        his, los, ats = self._hi[shard], self._lo[shard], self._at[shard]
        if his is None or los is None or ats is None:
            his, los, ats = array("Q"), array("Q"), array("I")
            self._hi[shard], self._lo[shard], self._at[shard] = his, los, ats
        i = bisect.bisect_left(his, hi)
        while i < len(his) and his[i] == hi:
            if los[i] == lo:
                return False
            i += 1
        if position > _NARROW_MAX and ats.typecode == "I":
            ats = self._at[shard] = array("Q", ats)
        his.insert(i, hi)
        los.insert(i, lo)
        ats.insert(i, position)
        self._len += 1
        return True

    @property
    def nbytes(self) -> int:
        """Bytes held by the columns (what the set costs beyond its fixed overhead)."""
        return sum(
            column.buffer_info()[1] * column.itemsize
            for columns in (self._hi, self._lo, self._at)
            for column in columns
            if column is not None
        )
