"""The error hierarchy: what each error says, carries, and keeps through pickling."""

from __future__ import annotations

import pickle

from dumpling_async import (
    APIConnectionError,
    BatchAbortedError,
    DuplicateHandleError,
    InsufficientCreditsError,
    InvalidResponseError,
    ProfileNotFoundError,
    RateLimitState,
)


def test_status_errors_name_their_status_and_subject() -> None:
    """str() of an API error reads '<status> for <what>: <message>'."""
    err = ProfileNotFoundError("not found", status=404, handle="ghost")
    assert str(err) == "404 for handle 'ghost': not found"
    assert (err.target, err.cursor) == ("ghost", None)
    url = "https://www.tiktok.com/@a/video/1234567"
    assert str(ProfileNotFoundError("x", status=404, target=url)) == f"404 for {url!r}: x"
    assert str(InsufficientCreditsError("top up", status=403)) == "403: top up"


def test_errors_survive_pickling_with_their_attributes() -> None:
    """Errors cross process boundaries (multiprocessing workers) whole."""
    state = RateLimitState(limit=40, remaining=0)
    errors = [
        InsufficientCreditsError(
            "top up",
            status=403,
            handle="h",
            headers={"x-a": "1"},
            retry_after=2.0,
            rate_limit=state,
        ),
        APIConnectionError("cut", handle="h", response_received=True),
        BatchAbortedError("stopped", cause=InsufficientCreditsError("top up", status=403)),
        DuplicateHandleError("seen", handle="h", first_index=3),
    ]
    body = InvalidResponseError("bad", handle="h", status=200)
    body.body, body.cursor = b"<html>", "20#1"
    errors.append(body)
    for err in errors:
        copy = pickle.loads(pickle.dumps(err))
        assert type(copy) is type(err) and str(copy) == str(err)
        assert copy.__dict__.keys() == err.__dict__.keys()
    assert pickle.loads(pickle.dumps(errors[0])).rate_limit == state
    assert pickle.loads(pickle.dumps(body)).body == b"<html>"


def test_batch_and_duplicate_errors_point_at_their_origin() -> None:
    """BatchAbortedError keeps the error that stopped the batch; a repeat names its first."""
    cause = InsufficientCreditsError("top up", status=403)
    assert BatchAbortedError("stopped", cause=cause).cause is cause
    assert DuplicateHandleError("seen", first_index=7).first_index == 7
