"""What a bulk call yields for each input position: a typed value or the error it ended with.

``ProfileResult``, ``VideoResult`` and ``TranscriptResult`` differ only in the names of
their two fields (what was asked, what came back); ``ok`` and ``unwrap`` are written once,
on :class:`BulkResult`.
"""

from __future__ import annotations

from typing import Any, ClassVar, Generic, TypeVar

import attrs

from ._errors import DumplingError
from ._models import TikTokProfile, TikTokTranscript, TikTokVideo

__all__ = ["BulkResult", "ProfileResult", "TranscriptResult", "VideoResult"]

T = TypeVar("T")


class BulkResult(Generic[T]):
    """The outcome of one input position: exactly one of a value and ``error``.
    ``first_index`` is set on a repeat of an earlier input: the position that looked its
    key up."""

    __slots__ = ()
    # The names of the subclass's two fields: the normalised input and the value.
    _key_field: ClassVar[str]
    _value_field: ClassVar[str]

    index: int
    input: object
    error: DumplingError | None
    # A repeat of an earlier input: the position that looked its key up (None for that
    # one, and for an input that is not a valid key): skip it without a set of your own.
    first_index: int | None

    @property
    def ok(self) -> bool:
        """True when the lookup returned a value."""
        return getattr(self, self._value_field) is not None

    @property
    def value(self) -> T | None:
        """The typed value, or None when the position ended with an error."""
        value: T | None = getattr(self, self._value_field)
        return value

    def unwrap(self) -> T:
        """Return the value, or raise the error this position ended with."""
        value: T | None = getattr(self, self._value_field)
        if value is not None:
            return value
        assert self.error is not None
        raise self.error

    @classmethod
    def of(
        cls, index: int, given: object, key: str, outcome: Any, first_index: int | None = None
    ) -> Any:
        """The result of position *index*: *outcome* is a value or a DumplingError; a
        repeat names the position that looked its key up."""
        field = "error" if isinstance(outcome, DumplingError) else cls._value_field
        fields: dict[str, Any] = {"index": index, "input": given, "first_index": first_index}
        fields[cls._key_field], fields[field] = key, outcome
        return cls(**fields)


@attrs.frozen(kw_only=True)
class ProfileResult(BulkResult[TikTokProfile]):
    """The outcome of one input position of ``gather_profiles`` / ``iter_profiles``."""

    _key_field = "handle"
    _value_field = "profile"

    index: int
    input: object
    handle: str
    profile: TikTokProfile | None = None
    error: DumplingError | None = None
    first_index: int | None = None


@attrs.frozen(kw_only=True)
class VideoResult(BulkResult[TikTokVideo]):
    """The outcome of one input position of ``gather_videos`` / ``iter_videos``."""

    _key_field = "url"
    _value_field = "video"

    index: int
    input: object
    url: str
    video: TikTokVideo | None = None
    error: DumplingError | None = None
    first_index: int | None = None


@attrs.frozen(kw_only=True)
class TranscriptResult(BulkResult[TikTokTranscript]):
    """The outcome of one input position of ``gather_transcripts`` / ``iter_transcripts``."""

    _key_field = "url"
    _value_field = "transcript"

    index: int
    input: object
    url: str
    transcript: TikTokTranscript | None = None
    error: DumplingError | None = None
    first_index: int | None = None
