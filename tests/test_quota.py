"""The quota model on a simulated clock: every algorithm real servers run, reset
information, hostile header values and slow probes (see _quota_sim.py)."""

from __future__ import annotations

import itertools
import math
import tracemalloc

import pytest
from _quota_sim import precise, simulate, whole_seconds, with_reset

from dumpling_async._core.quota import MAX_LIMIT, QuotaModel, ResponseInfo
from dumpling_async.testing import RateLimitRule

ALGORITHMS = ["fixed", "sliding", "sliding_counter", "token_bucket", "gcra"]


def _model(window: float = 0.25) -> QuotaModel:
    return QuotaModel(window=window, upstream_pause=0.5, max_pause=60.0)


def _ok(limit: int | None, remaining: int | None, status: int = 200) -> ResponseInfo:
    return ResponseInfo(status=status, limit=limit, remaining=remaining)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("window", [0.5, 2.0, 60.0])
def test_every_algorithm_is_used_fully_with_few_429s(algorithm: str, window: float) -> None:
    """Not told the limit or the window: near-ideal time and at most 1 % 429s."""
    rule = RateLimitRule(40, window, algorithm)  # type: ignore[arg-type]
    for seed in range(3):
        outcome = simulate(rule, seed=seed)
        # The sliding window counter returns a burst's quota only over the next window,
        # which caps even a perfect client below 1.0 (by up to a window).
        floor = 0.85 if algorithm == "sliding_counter" else 0.95
        assert outcome.efficiency(600, rule) >= floor, (seed, outcome)
        assert outcome.share_429 <= 0.01, (seed, outcome)


@pytest.mark.parametrize("algorithm", ["token_bucket", "gcra"])
def test_a_short_bucket_is_recognised_after_an_exact_retry_after(algorithm: str) -> None:
    """A bucket whose first 429 set the window from its Retry-After is still recognised
    as refilling gradually (before, each later 429 only nudged the window up: 7 429s)."""
    rule = RateLimitRule(40, 0.25, algorithm)  # type: ignore[arg-type]
    worst = max(simulate(rule, handles=400, seed=seed).rate_limited for seed in range(20))
    assert worst <= 2


@pytest.mark.parametrize("algorithm", ["fixed", "sliding", "token_bucket", "gcra"])
def test_whole_second_retry_after_still_learns_the_window(algorithm: str) -> None:
    """With Retry-After in whole seconds only (2 s windows), still near-ideal."""
    rule = RateLimitRule(40, 2.0, algorithm)  # type: ignore[arg-type]
    outcome = simulate(rule, headers=whole_seconds)
    assert outcome.efficiency(600, rule) >= 0.95, outcome
    assert outcome.share_429 <= 0.02, outcome


@pytest.mark.parametrize("window", [2.0, 10.0])
def test_a_window_counter_with_whole_second_retry_after_is_trickled(window: float) -> None:
    """A sliding window counter that says Retry-After in whole seconds (the `limits`
    library's way) is recognised as gradual (before: read as a log of a 3.5 s window,
    0.54 of the quota at 2 s), and a sliding log is not trickled for long."""
    counter = RateLimitRule(40, window, "sliding_counter")
    for seed in range(8):
        outcome = simulate(counter, seed=seed, headers=whole_seconds)
        assert outcome.efficiency(600, counter) >= 0.8, (seed, outcome)
        assert outcome.share_429 <= 0.01, (seed, outcome)
    log = RateLimitRule(40, 0.5, "sliding")
    worst = max(simulate(log, seed=seed, headers=whole_seconds).share_429 for seed in range(8))
    assert worst <= 0.025


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_reset_information_is_used(algorithm: str) -> None:
    """When the server says when quota comes back, nothing has to be learned."""
    rule = RateLimitRule(40, 2.0, algorithm)  # type: ignore[arg-type]
    outcome = simulate(rule, headers=with_reset)
    floor = 0.85 if algorithm == "sliding_counter" else 0.97
    assert outcome.efficiency(600, rule) >= floor, outcome
    assert outcome.share_429 <= 0.01, outcome


def test_a_limit_that_halves_mid_run_is_followed() -> None:
    """The limit dropping from 40 to 20 halfway: followed at once. Requests already sent
    on quota the server had confirmed meet the new limit (at most what was in flight)."""
    rule = RateLimitRule(40, 0.5, "fixed")
    outcome = simulate(rule, change=(300, 20))
    assert outcome.model.limit == 20
    assert outcome.rate_limited <= 3 + 16, outcome  # learning, plus one burst in flight
    assert outcome.efficiency(600, rule) >= 0.6, outcome  # ideal assumes the old rate


def test_hostile_numbers_are_bounded() -> None:
    """Remaining above Limit is clamped; a huge Limit is capped; memory stays small."""
    model = _model()
    seq = model.grant(0.0)
    model.answer(seq, 0.01, _ok(5, 50))
    assert (model.limit, model.remaining) == (5, 5)
    tracemalloc.start()
    try:
        seq = model.grant(0.02)
        model.answer(seq, 0.03, _ok(10**14, 10**14 - 3))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert model.limit == MAX_LIMIT and peak < 64 * 1024
    assert model.wait(0.04) == 0


def test_limit_zero_pauses_and_probes_with_backoff() -> None:
    """Limit 0: nothing goes but one probe at a time, ever further apart, until it lifts."""
    model = _model()
    now = 0.0
    sent = []
    for _ in range(6):
        wait = model.wait(now)
        now += wait
        sent.append(now)
        seq = model.grant(now)
        model.answer(seq, now + 0.01, _ok(0, 0))
        now += 0.01
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert all(later >= earlier for earlier, later in itertools.pairwise(gaps))
    assert gaps[-1] > 4 * gaps[0]
    seq = model.grant(now + model.wait(now))
    model.answer(seq, now + 60, _ok(10, 9))  # the server lifts the pause
    assert model.wait(now + 60) == 0


def test_429s_without_retry_after_grow_the_window_once_per_pause() -> None:
    """Sixteen 429s with no Retry-After from requests in flight: one lesson, bounded."""
    model = _model(window=0.5)
    seq = model.grant(0.0)
    model.answer(seq, 0.01, _ok(20, 0))
    flying = [model.grant(0.02) for _ in range(16)]
    for seq in flying:
        model.answer(seq, 0.03, _ok(20, 0, status=429))
    assert model.window == pytest.approx(1.0)  # doubled once, not 2**16 times
    assert model.paused_until <= 0.03 + 1.0


def test_a_slow_probe_stops_blocking_the_others() -> None:
    """A probe with no answer blocks others only for a window plus the usual latency."""
    model = _model(window=0.5)
    seq = model.grant(0.0)
    model.answer(seq, 0.01, _ok(1, 0))
    probe_at = 0.6
    assert model.wait(probe_at) == 0
    model.grant(probe_at)  # the probe; no answer comes
    assert 0 < model.wait(probe_at + 0.1) < math.inf
    assert model.wait(probe_at + 0.5 + 0.02) == 0


def test_answers_that_overtook_others_never_add_quota() -> None:
    """An answer whose request may have been overtaken cannot raise the budget."""
    model = _model()
    seq = model.grant(0.0)
    model.answer(seq, 0.01, _ok(5, 4))
    first, *_, last = [model.grant(0.02) for _ in range(4)]
    model.answer(last, 0.03, _ok(5, 0))  # counted last, answered first
    model.answer(first, 0.04, _ok(5, 3))  # counted first: older news
    assert model.wait(0.05) > 0


def test_usage_by_another_client_is_counted() -> None:
    """More in use than we sent (another worker on the key) holds our quota back."""
    model = _model()
    seq = model.grant(0.0)
    model.answer(seq, 0.01, _ok(10, 2))  # we sent one, the server counts eight
    assert sum(model.wait(0.02) == 0 and bool(model.grant(0.02)) for _ in range(5)) == 2


def test_the_window_guess_is_replaced_by_the_servers_policy() -> None:
    """RateLimitPolicy's w= sets the window at once."""
    model = _model()
    seq = model.grant(0.0)
    info = ResponseInfo(status=200, limit=10, remaining=9, window=30.0)
    model.answer(seq, 0.01, info)
    assert model.window == 30.0 and model.learned


def test_fake_server_windows_match_the_simulation() -> None:
    """The harness reads the fake server's own algorithms (a check on the harness)."""
    rule = RateLimitRule(10, 1.0, "fixed")
    outcome = simulate(rule, handles=30, headers=precise)
    assert outcome.requests >= 30 and outcome.model.limit == 10


def test_a_server_without_headers_is_not_modelled() -> None:
    """With no rate-limit headers at all, nothing waits and nothing piles up."""
    model = _model()
    for i in range(10_000):
        assert model.wait(float(i)) == 0
        seq = model.grant(float(i))
        model.answer(seq, i + 0.5, ResponseInfo(status=200, limit=None, remaining=None))
    assert len(model.to_state()["_log"]) <= 1 and model.in_flight == 0
