"""Handle normalisation and validation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dumpling_async import InvalidHandleError, normalize_handle

VALID = st.from_regex(r"[a-z0-9_.]{1,23}[a-z0-9_]", fullmatch=True)


@pytest.mark.parametrize(
    ("given_value", "expected"),
    [
        ("stoolpresidente", "stoolpresidente"),
        ("  @StoolPresidente \n", "stoolpresidente"),
        ("https://www.tiktok.com/@stoolpresidente", "stoolpresidente"),
        ("https://www.tiktok.com/@StoolPresidente/video/7312?lang=en", "stoolpresidente"),
        ("tiktok.com/@name_1?x=y", "name_1"),
        ("http://m.tiktok.com/@a.b#frag", "a.b"),
        ("WWW.TIKTOK.COM/@ab", "ab"),
        ("ab", "ab"),
        ("a" * 24, "a" * 24),
    ],
)
def test_normalises(given_value: str, expected: str) -> None:
    """Accepted spellings all normalise to the bare lower-case handle."""
    assert normalize_handle(given_value) == expected


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "a",
        "a" * 25,
        "name.",
        "@@name",
        "na me",
        "name!",
        "ünïcode",
        "name\u202e",
        "https://example.com/@name",
        "https://www.tiktok.com/name",
        "javascript:alert(1)",
        "file:///etc/passwd",
        "../../etc/passwd",
        'name","handle":"x',
        "name?x=1",
        "x" * 100_000,
        "name\x00",
    ],
)
def test_rejects(bad: str) -> None:
    """Anything that is not a TikTok handle raises InvalidHandleError."""
    with pytest.raises(InvalidHandleError):
        normalize_handle(bad)


@pytest.mark.parametrize("bad", [None, 12, b"name", ["name"], object()])
def test_rejects_non_strings(bad: object) -> None:
    """Non-string input raises InvalidHandleError, not TypeError."""
    with pytest.raises(InvalidHandleError):
        normalize_handle(bad)


@given(st.text(max_size=60))
def test_any_text_gives_handle_or_typed_error(text: str) -> None:
    """Any string yields a valid, idempotent handle or InvalidHandleError, nothing else."""
    try:
        handle = normalize_handle(text)
    except InvalidHandleError:
        return
    assert normalize_handle(handle) == handle
    assert 2 <= len(handle) <= 24 and not handle.endswith(".")


@given(VALID, st.sampled_from(["{}", "@{}", " {} ", "https://www.tiktok.com/@{}/video/1"]))
def test_valid_handles_survive(handle: str, template: str) -> None:
    """A valid handle in any accepted spelling comes back unchanged."""
    assert normalize_handle(template.format(handle.upper())) == handle
