"""WebVTT parsing for TikTok transcripts: timed cues in seconds, with plain text."""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Iterator

import attrs

__all__ = ["TranscriptCue", "cues_to_text", "parse_webvtt"]

# WebVTT allows CRLF, lone CR and LF; str.splitlines() would also split on \v, \x85, U+2028...
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# hh:mm:ss.ttt or mm:ss.ttt, with a comma tolerated for SRT-style files. Hours may exceed two
# digits; nine at most keeps the millisecond count exact in a float (and absurd input cheap).
_TIMESTAMP = r"(?:(\d{1,9}):)?([0-5]\d):([0-5]\d)[.,](\d{3})"
# Anything after the end time (``align:start position:10%``) is cue settings, which we ignore.
_TIMING = re.compile(rf"[ \t]*{_TIMESTAMP}[ \t]*-->[ \t]*{_TIMESTAMP}(?:[ \t].*)?", re.ASCII)
# Voice, class, italic/bold/underline, ruby and inline-timestamp tags all look like this.
# Excluding '<' inside keeps a run of unclosed '<' linear instead of quadratic.
_TAG = re.compile(r"<[^<>]*>")


@attrs.frozen(kw_only=True)
class TranscriptCue:
    """One timed piece of a transcript: times in seconds, text without markup."""

    start: float
    end: float
    text: str
    identifier: str | None = None

    @property
    def duration(self) -> float:
        """How long the cue is shown, in seconds."""
        return self.end - self.start


def parse_webvtt(text: str) -> tuple[TranscriptCue, ...]:
    """Return the cues of the WebVTT document *text*, in document order.

    Lenient: the header may be missing, malformed blocks and cues ending before they start are
    skipped, and no input string makes it raise.
    """
    if not isinstance(text, str):
        raise TypeError(f"parse_webvtt() needs a str, not {type(text).__name__}")
    lines = _LINE_BREAK.split(text.removeprefix("\ufeff").lstrip())
    first = 0
    if lines[0].startswith("WEBVTT"):
        # As in the spec, header lines run to the first blank line or the first timing line.
        first = 1
        while first < len(lines) and lines[first].strip() and "-->" not in lines[first]:
            first += 1
    cues = (_parse_block(block) for block in _blocks(lines[first:]))
    return tuple(cue for cue in cues if cue is not None)


def cues_to_text(cues: Iterable[TranscriptCue]) -> str:
    """Return the plain text of a transcript: cue texts joined by newlines, empty ones skipped."""
    return "\n".join(cue.text for cue in cues if cue.text)


def _blocks(lines: list[str]) -> Iterator[list[str]]:
    """Yield the blocks of *lines*: runs of non-blank lines."""
    block: list[str] = []
    for line in lines:
        # Whitespace-only lines count as blank: hand-edited files often have trailing spaces.
        if not line.strip():
            if block:
                yield block
            block = []
            continue
        # As in the spec, a timing line can only be a block's first or second line, so a later
        # one starts a new block: the previous cue was missing its closing blank line.
        if "-->" in line and block and (len(block) >= 2 or "-->" in block[0]):
            yield block
            block = []
        block.append(line)
    if block:
        yield block


def _parse_block(block: list[str]) -> TranscriptCue | None:
    """Return the cue *block* holds, or None for a non-cue or malformed block."""
    # The timing line comes first, or second after an identifier. NOTE, STYLE and REGION blocks
    # may not contain "-->", so like any other block without a timing line they are skipped.
    at = next((i for i, line in enumerate(block[:2]) if "-->" in line), None)
    if at is None:
        return None
    match = _TIMING.fullmatch(block[at])
    if match is None:
        return None
    start = _seconds(*match.group(1, 2, 3, 4))
    end = _seconds(*match.group(5, 6, 7, 8))
    if end < start:
        return None
    # Tags go first, so an escaped "&lt;b&gt;" survives as the literal text "<b>".
    body = html.unescape(_TAG.sub("", "\n".join(block[at + 1 :])))
    return TranscriptCue(start=start, end=end, text=body, identifier=block[0] if at else None)


def _seconds(hours: str | None, minutes: str, seconds: str, millis: str) -> float:
    """Convert timestamp fields to seconds."""
    total_ms = ((int(hours or 0) * 60 + int(minutes)) * 60 + int(seconds)) * 1000 + int(millis)
    # One division of whole milliseconds gives the float nearest the exact time.
    return total_ms / 1000
