"""``--shard K/N``: split one input between N workers by a stable hash of each handle.

Every spelling of a handle (``@Name``, ``name``, a profile URL) normalises to one handle,
and the handle's SHA-256 picks its worker, so each distinct handle belongs to exactly one
shard whatever the worker, machine or Python version. Inputs that are not handles belong
to shard 1, so each still ends as exactly one error line overall.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator

import attrs
import click

from .._core.inputs import normalize_handle
from .._errors import InvalidHandleError
from ._input import InputEntry

__all__ = ["Shard", "parse_shard", "shard_index"]

_FORMAT = re.compile(r"([0-9]{1,9})/([0-9]{1,9})", re.ASCII)


def shard_index(handle: str, count: int) -> int:
    """The 0-based share of *count* that the normalised *handle* belongs to."""
    digest = hashlib.sha256(handle.encode()).digest()
    return int.from_bytes(digest[:8], "big") % count


@attrs.frozen
class Shard:
    """Share *index* (1-based) of *count*."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def owns(self, text: str) -> bool:
        """Whether the input entry *text* is this worker's to look up."""
        try:
            handle = normalize_handle(text)
        except InvalidHandleError:
            return self.index == 1  # one worker reports each invalid line
        return shard_index(handle, self.count) == self.index - 1

    def select(self, entries: Iterator[InputEntry]) -> Iterator[InputEntry]:
        """This shard's entries, in input order (their index and line are kept)."""
        return (entry for entry in entries if self.owns(entry.text))


def parse_shard(ctx: click.Context, param: click.Parameter, value: str | None) -> Shard | None:
    """The ``--shard`` option's callback: ``K/N`` with 1 <= K <= N, else a usage error."""
    if value is None:
        return None
    text = value.strip()
    match = _FORMAT.fullmatch(text.replace(" ", ""))
    if match is None:
        raise click.BadParameter(
            f"{text!r}: expected K/N, e.g. 2/3 for the second of three workers", ctx, param
        )
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or not 1 <= index <= count:
        raise click.BadParameter(f"{text!r}: K must be between 1 and N (1 <= K <= N)", ctx, param)
    return Shard(index, count)
