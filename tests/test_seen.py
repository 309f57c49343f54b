"""The bulk engine's compact set of keys seen (``_core.seen.SeenKeys``)."""

from __future__ import annotations

import random

import pytest

from dumpling_async._core.seen import SeenKeys


def test_every_key_added_is_found_at_its_first_position() -> None:
    """Keys added once are found with their position; repeats change nothing."""
    seen = SeenKeys()
    keys = [f"user{i}" for i in range(20_000)]
    for position, key in enumerate(keys):
        assert seen.add(key, position)
    for position, key in enumerate(keys):
        assert not seen.add(key, position + 1_000_000)  # a repeat: the first one stays
    assert len(seen) == len(keys)
    assert all(seen.get(key) == position for position, key in enumerate(keys))
    assert "user20000" not in seen and seen.get("user20000") is None and "user7" in seen


def test_keys_of_any_text_are_told_apart() -> None:
    """Keys differing in one character, in case, beyond ASCII, or empty, are distinct."""
    keys = ["", "a", "A", "ab", "ba", "é", "e\u0301", "🙂", "\udcff", "a" * 10_000, "a" * 9_999]
    seen = SeenKeys()
    for position, key in enumerate(keys):
        assert seen.add(key, position), key
    assert [seen.get(key) for key in keys] == list(range(len(keys)))
    assert 1 not in seen  # not a string: never added


def test_a_position_past_four_billion_is_kept_exactly() -> None:
    """A shard widens its positions' column for a position that needs 8 bytes."""
    seen = SeenKeys()
    seen.add("early", 7)
    seen.add("late", 2**40 + 3)
    seen.add("early2", 9)
    assert (seen.get("early"), seen.get("late"), seen.get("early2")) == (7, 2**40 + 3, 9)


def test_memory_is_about_twenty_bytes_a_key() -> None:
    """The columns hold 20 bytes a key (16 of digest, 4 of position), however long the key."""
    seen = SeenKeys()
    rng = random.Random(1)
    for position in range(50_000):
        seen.add("x" * rng.randrange(1, 200) + str(position), position)
    assert 20 * len(seen) <= seen.nbytes <= 22 * len(seen), seen.nbytes / len(seen)


def test_digests_sharing_their_first_half_are_told_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys whose digests share the first 8 bytes (forced here) are kept apart."""
    from dumpling_async._core import seen as module

    def digest(key: str) -> tuple[int, int]:
        return 12345 << 40, sum(map(ord, key))  # one first half for all

    monkeypatch.setattr(module, "_digest", digest)
    keys = ["ab", "ba", "abc", "zz", "a"]  # "ab" and "ba" share even the second half
    seen = SeenKeys()
    assert [seen.add(key, i) for i, key in enumerate(keys)] == [True, False, True, True, True]
    assert [seen.get(key) for key in keys] == [0, 0, 2, 3, 4]
