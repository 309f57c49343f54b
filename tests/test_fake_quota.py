"""The fake server's rate-limit algorithms (with explicit times) and its rate-limit headers
(over real requests)."""

from __future__ import annotations

import asyncio
import copy
import math
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import attrs
import pytest
from conftest import KEY

from dumpling_async.testing import (
    ALGORITHMS,
    GARBAGE_VALUES,
    HOSTILE_HEADERS,
    RESET_HEADERS,
    AnswerTime,
    FakeDumplingServer,
    RateLimitRule,
)
from dumpling_async.testing._headers import Quota, rate_limit_headers, retry_after_headers
from dumpling_async.testing._quota import Algorithm, Window

PATH = "/api/v1/get-tiktok-profile"
HEADERS = {"Authorization": f"Bearer {KEY}"}


def _window(algorithm: Algorithm, limit: int = 4, window: float = 1.0) -> Window:
    return Window(RateLimitRule(limit, window, algorithm), 0.0)


def _burst(window: Window, now: float, n: int) -> list[int]:
    """Take *n* requests at *now*; the remaining after each allowed one."""
    seen = []
    for _ in range(n):
        assert window.take(now) is None
        seen.append(window.remaining(now))
    return seen


# -- the algorithms, with a controlled clock -------------------------------------------------


def test_fixed_window() -> None:
    """A fixed window allows limit requests, then refuses until its end, then starts over."""
    w = _window("fixed")
    assert _burst(w, 0.1, 4) == [3, 2, 1, 0]
    assert w.take(0.4) == pytest.approx(0.6)
    assert w.remaining(0.99) == 0
    assert w.remaining(1.0) == 4
    assert _burst(w, 1.5, 4) == [3, 2, 1, 0]
    assert w.take(1.6) == pytest.approx(0.4)


def test_sliding_log() -> None:
    """A sliding log gives each request back exactly one window after it was counted."""
    w = _window("sliding")
    for at in (0.0, 0.25, 0.5, 0.75):
        assert w.take(at) is None
    assert w.remaining(0.9) == 0
    assert w.take(0.9) == pytest.approx(0.1)
    assert w.remaining(1.0) == 1
    assert w.take(1.0) is None
    assert w.take(1.1) == pytest.approx(0.15)
    assert w.remaining(1.76) == 3  # 0.5 and 0.75 have gone


def test_sliding_counter_weights_the_previous_window() -> None:
    """The weighted count decays the previous window's count linearly (limit 10 per 1 s)."""
    w = _window("sliding_counter", limit=10)
    assert _burst(w, 0.0, 10)[-1] == 0
    assert w.take(0.5) == pytest.approx(0.5, abs=1e-5)  # the current window is full: the next one
    assert w.remaining(1.0) == 0  # weighted 10 x 1.0: not below the limit
    assert w.remaining(1.05) == 1  # 10 x 0.95 = 9.5: floor 9
    assert w.take(1.05) is None  # weighted 10.5 now
    assert w.remaining(1.05) == 0
    assert w.take(1.05) == pytest.approx(0.05, abs=1e-5)  # 10 x (2 - t) + 1 < 10 from t = 1.1
    assert w.remaining(1.5) == 10 - math.floor(10 * 0.5 + 1)
    assert w.remaining(2.5) == 10 - math.floor(1 * 0.5)  # two windows on: only 1 counted
    assert w.remaining(3.0) == 10


def test_sliding_counter_matches_the_limits_library(monkeypatch: pytest.MonkeyPatch) -> None:
    """Over a random schedule, allow/deny and remaining equal ``limits``' own counter."""
    limits = pytest.importorskip("limits")
    from limits.storage import memory
    from limits.strategies import SlidingWindowCounterRateLimiter

    clock = [1000.0]

    class FrozenTime:
        @staticmethod
        def time() -> float:
            return clock[0]

    monkeypatch.setattr(memory, "time", FrozenTime)
    monkeypatch.setattr(limits.strategies, "time", FrozenTime)
    storage = memory.MemoryStorage()
    try:
        theirs = SlidingWindowCounterRateLimiter(storage)
        item = limits.RateLimitItemPerSecond(20, 2)
        ours = Window(RateLimitRule(20, 2.0, "sliding_counter"), clock[0])
        rng = random.Random(7)
        for _ in range(600):
            clock[0] += rng.expovariate(12.0)
            allowed = theirs.hit(item, "key")
            assert (ours.take(clock[0]) is None) == allowed, clock[0]
            stats = theirs.get_window_stats(item, "key")
            assert ours.remaining(clock[0]) == stats.remaining, clock[0]
    finally:
        storage.timer.cancel()


def test_token_bucket() -> None:
    """A token bucket refills one token every window / limit seconds, up to limit."""
    w = _window("token_bucket")
    assert _burst(w, 0.0, 4) == [3, 2, 1, 0]
    assert w.take(0.0) == pytest.approx(0.25)
    assert w.take(0.1) == pytest.approx(0.15)
    assert w.remaining(0.25) == 1
    assert w.remaining(10.0) == 4


def test_gcra() -> None:
    """GCRA allows a burst of limit after idle, then one request per emission interval."""
    w = _window("gcra")  # T = 0.25, tau = 0.75
    assert w.remaining(0.0) == 4
    assert _burst(w, 0.0, 4) == [3, 2, 1, 0]  # TAT = 1.0
    assert w.take(0.0) == pytest.approx(0.25)  # TAT - tau - now
    assert w.take(0.2) == pytest.approx(0.05)
    assert w.remaining(0.25) == 1
    assert w.take(0.25) is None  # TAT = 1.25
    assert w.remaining(0.25) == 0
    assert w.take(0.3) == pytest.approx(0.2)
    assert w.remaining(0.75) == 2
    assert w.remaining(1.25) == 4
    assert w.until_full(0.75) == pytest.approx(0.5)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_reports_are_consistent(algorithm: Algorithm) -> None:
    """For every algorithm, a refusal's wait is exactly when the next request is allowed."""
    _check_consistent(_window(algorithm, limit=5, window=2.0))


def _check_consistent(w: Window, start: float = 0.0, window: float = 2.0) -> None:
    """Over a random schedule, each refusal's wait is when the next request is allowed."""
    now, rng = start, random.Random(3)
    rate = 4.0 * 2.0 / window  # about 1.6 x the limit per window
    for _ in range(400):
        now += rng.expovariate(rate)
        before = w.remaining(now)
        wait = w.take(now)
        if wait is None:
            assert before >= 1 and w.remaining(now) in (before - 1, before)
            continue
        assert before == 0 and w.until_allowed(now) == wait == w.reset_after(now)
        assert 0 < wait <= window + 1e-5
        # Probed on copies: a window's clock only goes forward.
        assert copy.deepcopy(w).remaining(now + wait * 0.99 - 1e-5) == 0
        assert copy.deepcopy(w).remaining(now + wait) >= 1


def test_reset_is_next_request_at_zero_else_full_quota() -> None:
    """``reset_after`` is until one request is allowed at Remaining 0, else until full."""
    w = _window("gcra", limit=4, window=8.0)  # T = 2
    assert w.reset_after(0.0) == 0.0
    w.take(0.0)
    assert w.reset_after(0.0) == pytest.approx(2.0)  # remaining 3: full again in 2 s
    _burst(w, 0.0, 3)
    assert w.remaining(0.0) == 0
    assert w.reset_after(0.0) == pytest.approx(2.0)  # one more allowed in 2 s
    assert w.until_full(0.0) == pytest.approx(8.0)


# Right after 4 of 8 were used and the limit went down to 4: counters and logs keep the 4
# used; a token bucket keeps its 4 tokens (at most the new limit); GCRA keeps its TAT, a
# backlog of 0.5 s, which is 2 requests at the new emission interval of 0.25 s.
LEFT_AFTER_HALVING = {"fixed": 0, "sliding": 0, "sliding_counter": 0, "token_bucket": 4, "gcra": 2}


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_limit_change(algorithm: Algorithm) -> None:
    """A limit change keeps what the algorithm stores; after idle the new limit holds."""
    w = _window(algorithm, limit=8, window=1.0)
    _burst(w, 0.0, 4)
    w.set_limit(4)
    assert w.limit == 4
    left = LEFT_AFTER_HALVING[algorithm]
    assert w.remaining(0.0) == left
    assert len(_burst(w, 0.0, left)) == left and w.take(0.0) is not None
    assert w.remaining(10.0) == 4
    assert _burst(w, 10.0, 4) == [3, 2, 1, 0]
    assert w.take(10.0) is not None
    w.set_limit(6)
    assert w.remaining(20.0) == 6
    assert len(_burst(w, 20.0, 6)) == 6 and w.take(20.0) is not None


def test_rule_and_limit_are_checked() -> None:
    """An unknown algorithm, a limit below 1 or a window of 0 are refused."""
    with pytest.raises(ValueError, match="algorithm"):
        RateLimitRule(5, 1.0, "leaky")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="limit"):
        RateLimitRule(0, 1.0)
    with pytest.raises(ValueError, match="window"):
        RateLimitRule(5, 0.0)
    with pytest.raises(ValueError, match="limit"):
        _window("gcra").set_limit(0)
    with pytest.raises(ValueError, match="reset_headers"):
        FakeDumplingServer(reset_headers="x-hours")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="hostile_headers"):
        FakeDumplingServer(hostile_headers="evil")  # type: ignore[arg-type]


# Aligned windows run on Unix time in the fake server: checked there, with a window that
# is no power of two (0.3 s), and with a lockout too.
UNIX_NOW = 1_700_000_000.123


@pytest.mark.parametrize(
    ("algorithm", "options", "window", "start"),
    [(a, {"lockout": True}, 2.0, 0.0) for a in ALGORITHMS]
    + [(a, {"aligned": True}, 0.3, UNIX_NOW) for a in ("fixed", "sliding_counter")]
    + [(a, {"aligned": True, "lockout": True}, 0.3, UNIX_NOW) for a in ("fixed", "sliding_counter")]
    + [("token_bucket", {"refill": 2}, 2.0, 0.0)],
)
def test_reports_are_consistent_with_options(
    algorithm: Algorithm, options: Any, window: float, start: float
) -> None:
    """With a lockout, aligned windows or a slow refill, a refusal's wait is still exactly
    when the next request is allowed."""
    rule = RateLimitRule(5, window, algorithm, **options)
    _check_consistent(Window(rule, start), start=start, window=window)


# -- answer times ----------------------------------------------------------------------------


def test_answer_time_stays_in_its_spread() -> None:
    """Samples are uniform in mean x (1 +- spread), never below minimum, 0 for a mean of 0."""
    rng = random.Random(1)
    samples = [AnswerTime(mean=0.2).sample(rng) for _ in range(2000)]
    assert all(0.1 <= s <= 0.3 for s in samples)
    assert min(samples) < 0.11 and max(samples) > 0.29  # the whole spread is used
    assert sum(samples) / len(samples) == pytest.approx(0.2, abs=0.01)
    assert {AnswerTime(mean=0.2, spread=0.0).sample(rng) for _ in range(10)} == {0.2}
    assert {AnswerTime(mean=0.002).sample(rng) for _ in range(10)} == {0.005}  # minimum
    assert AnswerTime(mean=0.0, tail_every=1).sample(rng) == 0.0


def test_answer_time_tail_is_one_in_n_at_random() -> None:
    """With ``tail_every=10``, about a tenth of the answers, at random places, are
    ``tail_factor`` times slower; a seed repeats the same draws."""
    answer = AnswerTime(mean=0.1, spread=0.1, tail_every=10, tail_factor=10.0)
    rng = random.Random(1)
    samples = [answer.sample(rng) for _ in range(10_000)]
    slow = [i for i, s in enumerate(samples) if s > 0.5]
    assert all(0.9 - 1e-9 <= samples[i] <= 1.1 + 1e-9 for i in slow)
    assert all(0.09 - 1e-9 <= s <= 0.11 + 1e-9 for i, s in enumerate(samples) if i not in slow)
    assert 0.08 <= len(slow) / len(samples) <= 0.12
    assert len({i % 10 for i in slow}) == 10  # drawn, not every tenth
    again = random.Random(1)
    assert [answer.sample(again) for _ in range(10_000)] == samples


def test_answer_time_is_checked() -> None:
    """Out-of-range fields are refused, and every field is keyword-only."""
    for bad in (
        {"mean": -0.1},
        {"mean": math.inf},
        {"mean": math.nan},
        {"mean": 0.1, "spread": 1.5},
        {"mean": 0.1, "spread": -0.1},
        {"mean": 0.1, "tail_every": 0},
        {"mean": 0.1, "tail_factor": 0.5},
        {"mean": 0.1, "minimum": -0.001},
    ):
        with pytest.raises(ValueError, match=next(iter(bad.keys() - {"mean"}), "mean")):
            AnswerTime(**bad)
    with pytest.raises(TypeError):
        AnswerTime(0.1)  # type: ignore[misc]


def test_latency_seed_repeats_the_answer_times() -> None:
    """The server draws an AnswerTime per request from its own generator seeded with
    ``latency_seed``; a float latency stays a constant."""
    answer = AnswerTime(mean=0.1, tail_every=3)
    rng = random.Random(5)
    expected = [answer.sample(rng) for _ in range(20)]
    for _ in range(2):
        server = FakeDumplingServer(latency=answer, latency_seed=5)
        assert [server._answer_time() for _ in range(20)] == expected
    assert len(set(expected)) == 20
    assert {FakeDumplingServer(latency=0.25)._answer_time() for _ in range(3)} == {0.25}


# -- the rule's options, with a controlled clock ---------------------------------------------


def test_aligned_fixed_window_starts_at_a_multiple() -> None:
    """``aligned``: a fixed window first used at 1003.7 runs from 1000 to 1010, not to 1013.7."""
    w = Window(RateLimitRule(4, 10.0, "fixed", aligned=True), 1003.7)
    assert _burst(w, 1003.7, 4) == [3, 2, 1, 0]
    assert w.take(1004.0) == pytest.approx(6.0)
    assert w.until_full(1004.0) == pytest.approx(6.0)
    assert w.remaining(1009.999) == 0
    assert w.remaining(1010.0) == 4
    assert _burst(w, 1012.5, 4) == [3, 2, 1, 0]
    assert w.take(1019.0) == pytest.approx(1.0)
    assert w.remaining(1035.0) == 4  # windows passed unused: still on multiples
    assert _burst(w, 1035.0, 4)[-1] == 0 and w.take(1035.0) == pytest.approx(5.0)
    unaligned = Window(RateLimitRule(4, 10.0, "fixed"), 1003.7)
    _burst(unaligned, 1003.7, 4)
    assert unaligned.take(1004.0) == pytest.approx(9.7)
    assert Window(RateLimitRule(4, 10.0, "fixed", aligned=True), -3.0).take(-3.0) is None


def test_aligned_sliding_counter_windows_start_at_multiples() -> None:
    """``aligned``: the sliding counter's fixed windows are [1000, 1010), [1010, 1020): at
    1011 the first window's 10 weigh 9, at 1015 they weigh 5."""
    w = Window(RateLimitRule(10, 10.0, "sliding_counter", aligned=True), 1003.7)
    assert _burst(w, 1003.7, 10)[-1] == 0
    assert w.take(1005.0) == pytest.approx(5.0, abs=1e-5)  # until 1010
    assert w.remaining(1009.9) == 0
    assert w.remaining(1011.0) == 1
    assert w.remaining(1015.0) == 5
    assert w.remaining(1030.0) == 10
    unaligned = Window(RateLimitRule(10, 10.0, "sliding_counter"), 1003.7)
    _burst(unaligned, 1003.7, 10)
    assert unaligned.remaining(1011.0) == 0  # its first window runs to 1013.7


def test_token_bucket_refill_below_limit() -> None:
    """``refill=2``: a burst of 10, then 2 a second; waits and resets at that rate."""
    w = Window(RateLimitRule(10, 1.0, "token_bucket", refill=2), 0.0)
    assert w.limit == 10
    assert _burst(w, 0.0, 10) == list(range(9, -1, -1))
    assert w.take(0.0) == pytest.approx(0.5)
    assert w.reset_after(0.0) == pytest.approx(0.5)  # Remaining 0: until one more
    assert w.until_full(0.0) == pytest.approx(5.0)
    assert w.take(0.25) == pytest.approx(0.25)
    assert w.remaining(0.5) == 1 and w.take(0.5) is None
    assert w.remaining(2.5) == 4
    assert w.reset_after(2.5) == pytest.approx(3.0)  # 6 tokens to go at 2 a second
    assert w.remaining(5.5) == 10
    paced = Window(RateLimitRule(10, 1.0, "token_bucket", refill=2), 0.0)
    allowed = sum(paced.take(i * 0.01) is None for i in range(1001))
    assert allowed == 10 + 2 * 10  # the burst, then 2 a second for 10 s


def test_refill_is_checked() -> None:
    """``refill`` is for token buckets only, between 1 and limit, and a limit change may
    not go below it; ``refill=limit`` is the plain bucket."""
    with pytest.raises(ValueError, match="token_bucket"):
        RateLimitRule(10, 1.0, "fixed", refill=2)
    for bad in (0, 11):
        with pytest.raises(ValueError, match="refill"):
            RateLimitRule(10, 1.0, "token_bucket", refill=bad)
    w = Window(RateLimitRule(10, 1.0, "token_bucket", refill=5), 0.0)
    with pytest.raises(ValueError, match="refill"):
        w.set_limit(4)
    w.set_limit(5)
    assert w.limit == 5
    plain, full = (
        _window("token_bucket", 5, 1.0),
        Window(RateLimitRule(5, 1.0, "token_bucket", refill=5), 0.0),
    )
    rng = random.Random(2)
    now = 0.0
    for _ in range(300):
        now += rng.expovariate(8.0)
        assert plain.take(now) == full.take(now)


def test_lockout_fixed_refuses_until_the_window_end() -> None:
    """``lockout`` on a fixed window: after a denial even a raised limit lets nothing
    through until the window's end; then the whole limit is there."""
    w = Window(RateLimitRule(3, 10.0, "fixed", lockout=True), 0.0)
    assert _burst(w, 0.0, 3) == [2, 1, 0]
    assert w.take(4.0) == pytest.approx(6.0)
    w.set_limit(6)
    assert w.remaining(5.0) == 0
    assert w.take(5.0) == pytest.approx(5.0)
    assert w.until_allowed(9.99) == pytest.approx(0.01)
    assert w.take(9.99) == pytest.approx(0.01)
    assert _burst(w, 10.0, 6) == [5, 4, 3, 2, 1, 0]
    free = Window(RateLimitRule(3, 10.0, "fixed"), 0.0)
    _burst(free, 0.0, 3)
    assert free.take(4.0) is not None
    free.set_limit(6)
    assert free.take(5.0) is None  # without a lockout the raised limit applies at once


def test_lockout_sliding_counter_refuses_without_counting() -> None:
    """``lockout`` on a sliding counter: after a denial at 12 everything is refused, and
    not counted, until the window ends at 20, where a plain counter allows at 12.5."""
    rule = RateLimitRule(10, 10.0, "sliding_counter", lockout=True)
    w, free = Window(rule, 0.0), Window(attrs.evolve(rule, lockout=False), 0.0)
    for window in (w, free):
        _burst(window, 0.0, 5)
        assert _burst(window, 12.0, 6)[-1] == 0  # 5 x 0.8 + 6 = 10
    assert w.take(12.0) == pytest.approx(8.0, abs=1e-5)
    assert free.take(12.0) == pytest.approx(0.0, abs=1e-5)
    for at in (12.5, 15.0, 19.9):
        assert w.remaining(at) == 0
        assert w.take(at) == pytest.approx(20.0 - at, abs=1e-5)
        assert w.reset_after(at) == pytest.approx(20.0 - at, abs=1e-5)
    assert free.take(12.5) is None  # 5 x 0.75 + 6 = 9.75
    assert w.remaining(20.001) == 5  # 6 x 0.9999: the refused ones were not counted
    assert w.take(20.001) is None


def test_lockout_other_algorithms_last_the_denials_wait() -> None:
    """``lockout`` on the other algorithms lasts the wait the denial gave."""
    for algorithm in ("sliding", "token_bucket", "gcra"):
        w = Window(RateLimitRule(4, 1.0, algorithm, lockout=True), 0.0)  # type: ignore[arg-type]
        _burst(w, 0.0, 4)
        wait = w.take(0.0)
        assert wait == pytest.approx(1.0 if algorithm == "sliding" else 0.25, abs=1e-5)
        w.set_limit(8)  # more room at once, but the lockout holds
        assert w.remaining(wait / 2) == 0
        assert w.take(wait / 2) == pytest.approx(wait / 2)
        assert w.take(wait) is None, algorithm


def test_window_end_reset_reports_the_fixed_window_end() -> None:
    """``window_end_reset``: the reported reset is the fixed window's end, even when the
    sliding counter is not whole by then (it over-promises); other algorithms ignore it."""
    fixed = Window(RateLimitRule(4, 10.0, "fixed", window_end_reset=True), 0.0)
    assert fixed.reset_after(0.0) == pytest.approx(10.0)  # unused: 0 without the option
    assert _window("fixed", 4, 10.0).reset_after(0.0) == 0.0
    fixed.take(3.0)
    assert fixed.reset_after(3.0) == pytest.approx(7.0)
    rule = RateLimitRule(10, 10.0, "sliding_counter", window_end_reset=True)
    counter, plain = Window(rule, 10.0), Window(attrs.evolve(rule, window_end_reset=False), 10.0)
    for window in (counter, plain):
        _burst(window, 19.0, 5)
    assert counter.reset_after(19.0) == pytest.approx(1.0)
    assert plain.reset_after(19.0) == pytest.approx(9.0, abs=1e-5)  # 5 x (1 - t/10) < 1
    assert counter.remaining(20.0) == 5  # at the reported reset the quota is not whole
    gcra = Window(RateLimitRule(4, 8.0, "gcra", window_end_reset=True), 0.0)
    gcra.take(0.0)
    assert gcra.reset_after(0.0) == pytest.approx(2.0)


def test_new_reset_forms_text() -> None:
    """``x-unix-ms`` is Unix time in whole milliseconds, rounded up; ``x-seconds-whole``
    is delta seconds, whole, rounded up."""
    quota = Quota(limit=3, remaining=2, reset=1.2341, window=60.0)
    ms = rate_limit_headers("x-unix-ms", quota, wall=1_700_000_000.0)
    assert ms == {
        "X-RateLimit-Limit": "3",
        "X-RateLimit-Remaining": "2",
        "X-RateLimit-Reset": "1700000001235",
    }
    whole = rate_limit_headers("x-seconds-whole", quota, wall=1_700_000_000.0)
    assert whole["X-RateLimit-Reset"] == "2"
    exact = attrs.evolve(quota, reset=3.0)
    assert rate_limit_headers("x-seconds-whole", exact)["X-RateLimit-Reset"] == "3"
    assert rate_limit_headers("x-unix-ms", exact, wall=10.5)["X-RateLimit-Reset"] == "13500"


def test_retry_after_rounding() -> None:
    """``down`` floors Retry-After (0 under a second); ``up`` stays at least 1; the
    milliseconds header is the same either way."""
    assert retry_after_headers(0.4, ms=True, rounding="down") == {
        "Retry-After": "0",
        "Retry-After-Ms": "400",
    }
    assert retry_after_headers(0.4, ms=True) == {"Retry-After": "1", "Retry-After-Ms": "400"}
    assert retry_after_headers(1.7, ms=False, rounding="down") == {"Retry-After": "1"}
    assert retry_after_headers(1.7, ms=False, rounding="up") == {"Retry-After": "2"}
    with pytest.raises(ValueError, match="retry_after_rounding"):
        FakeDumplingServer(retry_after_rounding="nearest")  # type: ignore[arg-type]


# -- headers, over real requests -------------------------------------------------------------


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers=HEADERS) as s:
        yield s


async def _send(
    session: aiohttp.ClientSession, server: FakeDumplingServer, n: int
) -> list[tuple[int, dict[str, str]]]:
    """*n* profile requests in turn: each status with its rate-limit headers."""
    seen = []
    for i in range(n):
        async with session.post(server.url + PATH, json={"handle": f"user{i}"}) as response:
            await response.read()
            headers = {
                k: v
                for k, v in response.headers.items()
                if k.lower().startswith(("x-ratelimit", "ratelimit", "retry-after"))
            }
            seen.append((response.status, headers))
    return seen


def _serve(**options: Any) -> FakeDumplingServer:
    options.setdefault("rate_limit", RateLimitRule(3, 60.0))
    return FakeDumplingServer(**options)


async def test_default_headers_are_unchanged(session: aiohttp.ClientSession) -> None:
    """By default: Limit and Remaining on every answer, Retry-After(-Ms) on the 429 only."""
    async with _serve() as server:
        seen = await _send(session, server, 4)
    assert [s for s, _ in seen] == [200, 200, 200, 429]
    for (_, headers), remaining in zip(seen[:3], ("2", "1", "0"), strict=True):
        assert headers == {"X-RateLimit-Limit": "3", "X-RateLimit-Remaining": remaining}
    assert set(seen[3][1]) == {
        "X-RateLimit-Limit",
        "X-RateLimit-Remaining",
        "Retry-After",
        "Retry-After-Ms",
    }
    assert seen[3][1]["Retry-After"] == "60"


async def test_reset_in_seconds(session: aiohttp.ClientSession) -> None:
    """``x-seconds``: X-RateLimit-Reset is a decimal number of seconds (here to window end)."""
    async with _serve(reset_headers="x-seconds") as server:
        seen = await _send(session, server, 4)
    for _, headers in seen:
        assert set(headers) >= {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"}
        value = headers["X-RateLimit-Reset"]
        # Rounded up to the millisecond, after Window's 1e-6 nudge: 60.001 is right too.
        assert len(value.split(".")[1]) == 3 and 59.0 < float(value) <= 60.001
    assert int(seen[3][1]["Retry-After"]) >= float(seen[3][1]["X-RateLimit-Reset"])


async def test_reset_as_unix_time(session: aiohttp.ClientSession) -> None:
    """``x-unix``: X-RateLimit-Reset is a whole Unix time, GitHub style."""
    async with _serve(reset_headers="x-unix") as server:
        before = time.time()
        seen = await _send(session, server, 2)
    for _, headers in seen:
        reset = headers["X-RateLimit-Reset"]
        assert reset.isdigit() and before + 59 <= int(reset) <= time.time() + 61


async def test_ietf_headers(session: aiohttp.ClientSession) -> None:
    """``ietf``: RateLimit-Limit/-Remaining/-Reset (whole seconds) and RateLimit-Policy."""
    async with _serve(reset_headers="ietf", rate_limit=RateLimitRule(3, 8.0, "gcra")) as server:
        seen = await _send(session, server, 4)
    assert [s for s, _ in seen] == [200, 200, 200, 429]
    expected = [("2", "3"), ("1", "6"), ("0", "3"), ("0", "3")]  # T = 8/3 s
    for (_, headers), (remaining, reset) in zip(seen, expected, strict=True):
        assert not any(k.startswith("X-") for k in headers)
        assert headers["RateLimit-Limit"] == "3"
        assert headers["RateLimit-Remaining"] == remaining
        assert headers["RateLimit-Reset"] == reset
        assert headers["RateLimit-Policy"] == "3;w=8"


async def test_ietf_structured_header(session: aiohttp.ClientSession) -> None:
    """``ietf-structured``: one RateLimit header with limit, remaining and reset, and the
    policy with a fractional window as it is."""
    rule = RateLimitRule(3, 60.5, "sliding")
    async with _serve(reset_headers="ietf-structured", rate_limit=rule) as server:
        seen = await _send(session, server, 2)
    for (_, headers), remaining in zip(seen, ("2", "1"), strict=True):
        assert set(headers) == {"RateLimit", "RateLimit-Policy"}
        assert headers["RateLimit"] == f"limit=3, remaining={remaining}, reset=61"
        assert headers["RateLimit-Policy"] == "3;w=60.5"


@pytest.mark.parametrize("form", RESET_HEADERS)
async def test_every_form_keeps_the_rule(session: aiohttp.ClientSession, form: str) -> None:
    """Whatever the header form, the rule itself is the same: 3 allowed, then 429s."""
    async with _serve(reset_headers=form) as server:
        seen = await _send(session, server, 5)
    assert [s for s, _ in seen] == [200, 200, 200, 429, 429]
    assert all("Retry-After" in headers for _, headers in seen[3:])


async def test_429_without_retry_after(session: aiohttp.ClientSession) -> None:
    """``retry_after_on_429=False``: a 429 carries no Retry-After at all, injected ones too."""
    async with _serve(retry_after_on_429=False, retry_after_always=True) as server:
        server.inject("429", handle="user0")
        seen = await _send(session, server, 5)
    assert [s for s, _ in seen] == [429, 200, 200, 429, 429]
    for status, headers in seen:
        assert ("Retry-After" in headers) == (status == 200)
        assert "Retry-After-Ms" not in headers
        assert "X-RateLimit-Remaining" in headers


async def test_retry_after_on_every_response(session: aiohttp.ClientSession) -> None:
    """``retry_after_always=True``: even a 200 says Retry-After (the window, rounded up)."""
    async with _serve(retry_after_always=True, rate_limit=RateLimitRule(3, 1.5)) as server:
        seen = await _send(session, server, 4)
    assert [h["Retry-After"] for _, h in seen[:3]] == ["2", "2", "2"]
    assert seen[3][0] == 429 and "Retry-After-Ms" in seen[3][1]


async def test_hostile_limit_zero(session: aiohttp.ClientSession) -> None:
    """``limit_zero``: Limit 0 and Remaining 0 everywhere, while 3 requests are still served."""
    async with _serve(hostile_headers="limit_zero") as server:
        seen = await _send(session, server, 4)
    assert [s for s, _ in seen] == [200, 200, 200, 429]
    for _, headers in seen:
        assert headers["X-RateLimit-Limit"] == "0" and headers["X-RateLimit-Remaining"] == "0"


async def test_hostile_remaining_over_limit(session: aiohttp.ClientSession) -> None:
    """``remaining_over_limit``: Remaining says Limit + 5, even on the 429."""
    async with _serve(hostile_headers="remaining_over_limit") as server:
        seen = await _send(session, server, 4)
    assert [s for s, _ in seen] == [200, 200, 200, 429]
    for _, headers in seen:
        assert headers["X-RateLimit-Limit"] == "3" and headers["X-RateLimit-Remaining"] == "8"


async def test_hostile_huge_limit(session: aiohttp.ClientSession) -> None:
    """``huge_limit``: Limit 10**14 and Remaining 10**14 minus what was used."""
    async with _serve(hostile_headers="huge_limit") as server:
        seen = await _send(session, server, 4)
    assert [s for s, _ in seen] == [200, 200, 200, 429]
    assert {h["X-RateLimit-Limit"] for _, h in seen} == {str(10**14)}
    remaining = [int(h["X-RateLimit-Remaining"]) for _, h in seen]
    assert remaining == [10**14 - 1, 10**14 - 2, 10**14 - 3, 10**14 - 3]


async def test_hostile_garbage(session: aiohttp.ClientSession) -> None:
    """``garbage``: Limit, Remaining and Reset cycle through non-numbers, one step a response."""
    async with _serve(hostile_headers="garbage", reset_headers="x-seconds") as server:
        seen = await _send(session, server, 5)
    assert [s for s, _ in seen] == [200, 200, 200, 429, 429]
    stripped = [v.strip() for v in GARBAGE_VALUES]  # HTTP drops the spaces around a value
    for name, offset in (("X-RateLimit-Limit", 0), ("X-RateLimit-Remaining", 1)):
        values = [h[name] for _, h in seen]
        assert values == [stripped[(i + offset) % 5] for i in range(5)]
    assert {h["X-RateLimit-Reset"] for _, h in seen} == set(stripped)


async def test_hostile_negative(session: aiohttp.ClientSession) -> None:
    """``negative``: every rate-limit value is -5; the 429 still comes after 3."""
    async with _serve(hostile_headers="negative", reset_headers="ietf") as server:
        seen = await _send(session, server, 4)
    assert [s for s, _ in seen] == [200, 200, 200, 429]
    for _, headers in seen:
        assert headers["RateLimit-Limit"] == headers["RateLimit-Remaining"] == "-5"
        assert headers["RateLimit-Reset"] == "-5"


def test_hostile_names_are_listed() -> None:
    """Every hostile name is exported, so tests can run through all of them."""
    assert HOSTILE_HEADERS == (
        "limit_zero",
        "remaining_over_limit",
        "huge_limit",
        "garbage",
        "negative",
    )


async def test_headers_hook_rewrites_last(session: aiohttp.ClientSession) -> None:
    """``headers_hook`` gets each status with its rate-limit headers and what it returns is
    what is sent, hostile values and Retry-After included."""
    calls: list[tuple[int, dict[str, str]]] = []
    script = iter(["10", "abc", "0"])

    def hook(status: int, headers: dict[str, str]) -> dict[str, str]:
        calls.append((status, dict(headers)))
        if status == 429:
            return {"Retry-After": "0.5"}
        return {"X-RateLimit-Limit": "10", "X-RateLimit-Remaining": next(script)}

    async with _serve(headers_hook=hook, hostile_headers="negative") as server:
        seen = await _send(session, server, 4)
    assert [s for s, _ in calls] == [200, 200, 200, 429]
    assert calls[0][1] == {"X-RateLimit-Limit": "-5", "X-RateLimit-Remaining": "-5"}
    assert [h for _, h in seen] == [
        {"X-RateLimit-Limit": "10", "X-RateLimit-Remaining": "10"},
        {"X-RateLimit-Limit": "10", "X-RateLimit-Remaining": "abc"},
        {"X-RateLimit-Limit": "10", "X-RateLimit-Remaining": "0"},
        {"Retry-After": "0.5"},
    ]


async def test_answer_time_is_waited_after_counting(session: aiohttp.ClientSession) -> None:
    """A request is counted when it arrives and answered after its 0.3 s answer time: of
    two concurrent requests against limit 1, the 429 comes back while the 200 is waiting,
    and the 200's record says when it was read as well as when it was answered."""
    answer = AnswerTime(mean=0.3, spread=0.0)
    async with _serve(rate_limit=RateLimitRule(1, 60.0), latency=answer) as server:
        started = time.monotonic()

        async def one(handle: str) -> tuple[int, float]:
            async with session.post(server.url + PATH, json={"handle": handle}) as response:
                await response.read()
                return response.status, time.monotonic() - started

        (ok, slow), (refused, fast) = sorted(await asyncio.gather(one("a"), one("b")))
    assert (ok, refused) == (200, 429)
    assert slow >= 0.3 and fast < slow
    assert [r.status for r in server.records] == [429, 200]  # answered in that order
    assert server.max_in_flight == 2
    answer = server.records[1]
    assert answer.arrived is not None
    assert started <= answer.arrived < started + 0.2  # read at once, before its answer time
    assert answer.at - answer.arrived >= 0.3


async def test_reset_as_unix_milliseconds(session: aiohttp.ClientSession) -> None:
    """``x-unix-ms``: X-RateLimit-Reset is a Unix time in whole milliseconds."""
    async with _serve(reset_headers="x-unix-ms") as server:
        before = time.time()
        seen = await _send(session, server, 2)
        after = time.time()
    for _, headers in seen:
        reset = headers["X-RateLimit-Reset"]
        assert reset.isdigit() and len(reset) == 13
        assert (before + 60) * 1000 <= int(reset) <= (after + 60) * 1000 + 1


async def test_reset_in_whole_seconds(session: aiohttp.ClientSession) -> None:
    """``x-seconds-whole``: X-RateLimit-Reset is delta seconds, whole, rounded up."""
    async with _serve(reset_headers="x-seconds-whole", rate_limit=RateLimitRule(3, 59.5)) as server:
        seen = await _send(session, server, 4)
    assert [s for s, _ in seen] == [200, 200, 200, 429]
    assert [h["X-RateLimit-Reset"] for _, h in seen] == ["60"] * 4


@pytest.mark.parametrize(("form", "unit"), [("x-unix", 60), ("x-unix-ms", 60_000)])
async def test_aligned_windows_end_on_unix_multiples(
    session: aiohttp.ClientSession, form: str, unit: int
) -> None:
    """``aligned=True`` on the fake server: windows follow Unix time, so the Unix reset is
    a multiple of the 60 s window."""
    rule = RateLimitRule(3, 60.0, aligned=True)
    async with _serve(reset_headers=form, rate_limit=rule) as server:
        before = time.time()
        seen = await _send(session, server, 4)
    assert [s for s, _ in seen] == [200, 200, 200, 429]
    for _, headers in seen:
        reset = int(headers["X-RateLimit-Reset"])
        assert reset % unit == 0 and before * unit / 60 < reset <= (before + 61) * unit / 60


async def test_retry_after_rounded_down(session: aiohttp.ClientSession) -> None:
    """``retry_after_rounding="down"``: a 0.4 s wait says Retry-After 0 (Retry-After-Ms
    still the milliseconds)."""
    rule = RateLimitRule(1, 0.4)
    async with _serve(rate_limit=rule, retry_after_rounding="down") as server:
        seen = await _send(session, server, 2)
    assert [s for s, _ in seen] == [200, 429]
    assert seen[1][1]["Retry-After"] == "0"
    assert 1 <= int(seen[1][1]["Retry-After-Ms"]) <= 400
    async with _serve(rate_limit=rule) as server:
        seen = await _send(session, server, 2)
    assert seen[1][1]["Retry-After"] == "1"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_server_limit_change(session: aiohttp.ClientSession, algorithm: Algorithm) -> None:
    """``set_rate_limit`` mid-run: the next answers say the new limit and enforce it."""
    async with _serve(rate_limit=RateLimitRule(8, 60.0, algorithm)) as server:
        first = await _send(session, server, 4)
        server.set_rate_limit(4)
        after = await _send(session, server, 6)
    assert [h["X-RateLimit-Limit"] for _, h in first] == ["8"] * 4
    assert [h["X-RateLimit-Limit"] for _, h in after] == ["4"] * 6
    left = LEFT_AFTER_HALVING[algorithm]
    assert [s for s, _ in after] == [200] * left + [429] * (6 - left)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_fake_server_command_accepts_every_algorithm(algorithm: str) -> None:
    """``fake-server --rate-limit`` takes each algorithm the fake server runs."""
    from dumpling_async.cli._demo import parse_rate_limit

    rule = parse_rate_limit(f"30/2:{algorithm.replace('_', '-')}")
    assert rule == RateLimitRule(30, 2.0, algorithm)  # type: ignore[arg-type]


def test_fake_server_command_refuses_unknown_algorithm() -> None:
    """An algorithm the fake server does not run is a usage error naming the choices."""
    import click

    from dumpling_async.cli._demo import parse_rate_limit

    with pytest.raises(click.BadParameter, match="gcra"):
        parse_rate_limit("30/2:leaky")
