"""The quota model on a simulated clock, with time in transit: every algorithm real servers
run, at answer times from ~0 to 3 s, with every reset-header form and rounding of
Retry-After, at windows from half a second to an hour (see _quota_sim.py); and the
model's states, hostile values and shared state, one answer at a time."""

from __future__ import annotations

import heapq
import itertools
import math
import statistics
import tracemalloc

import pytest
from _quota_sim import Network, simulate

from dumpling_async._core import state as shared_state
from dumpling_async._core.probes import Probes
from dumpling_async._core.quota import MAX_LIMIT, Mode, QuotaModel, ResponseInfo
from dumpling_async._core.window import StepWindow
from dumpling_async.testing import ALGORITHMS, AnswerTime, RateLimitRule

# (reset header, Retry-After): what the server says besides Limit and Remaining.
FORMS = [
    ("none", "ms"),
    ("none", "up"),
    ("none", "down"),
    ("none", "none"),
    ("x-unix", "up"),
    ("x-unix-ms", "up"),
    ("x-seconds", "ms"),
    ("x-seconds-whole", "up"),
]
LATENCIES = {
    "0": AnswerTime(mean=0.0),
    "0.3": AnswerTime(mean=0.3),
    "1": AnswerTime(mean=1.0),
    "1-tail": AnswerTime(mean=1.0, tail_every=20),
    "3": AnswerTime(mean=3.0),
}
DELAYS = (0.01, 0.08, 0.15)  # to the server's limiter, one per seed


def _model(window: float | None = None, max_pause: float = 60.0) -> QuotaModel:
    return QuotaModel(window=window, upstream_pause=0.5, max_pause=max_pause)


def _ok(limit: int | None, remaining: int | None, status: int = 200) -> ResponseInfo:
    return ResponseInfo(status=status, limit=limit, remaining=remaining)


def _run(
    algorithm: str, latency: str, form: tuple[str, str], seed: int, window: float = 2.0
) -> tuple[float, float, int]:
    limit, handles = (40, 600) if window <= 2 else (30, 120)
    rule = RateLimitRule(limit, window, algorithm)  # type: ignore[arg-type]
    network = Network(to_server=DELAYS[seed % 3], answer=LATENCIES[latency])
    model = _model(max_pause=2 * window + 60)
    outcome = simulate(
        rule,
        handles=handles,
        seed=seed,
        network=network,
        reset=form[0],
        retry_after=form[1],  # type: ignore[arg-type]
        model=model,
        attempts=10 if window > 60 else 3,
    )
    return outcome.efficiency(handles, rule), outcome.share_429, outcome.lost


# -- the whole matrix: nothing is lost ------------------------------------------------------


@pytest.mark.parametrize("form", FORMS, ids=lambda f: f"{f[0]}+{f[1]}")
@pytest.mark.parametrize("latency", list(LATENCIES))
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_no_lookup_is_lost_to_a_misjudged_quota(
    algorithm: str, latency: str, form: tuple[str, str]
) -> None:
    """Every algorithm, answer time and header form (40 per 2 s, 600 handles, three
    seeds and delays to the server): no lookup runs out of attempts on 429s."""
    for seed in range(3):
        efficiency, share, lost = _run(algorithm, latency, form, seed)
        assert lost == 0, (seed, efficiency, share)
        assert share <= 0.25, (seed, efficiency, share)


@pytest.mark.parametrize("window", [0.5, 60.0, 3600.0])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_other_windows_keep_every_lookup(algorithm: str, window: float) -> None:
    """Half a second to an hour (on the simulated clock), 1 s answers: nothing lost."""
    for form, seed in itertools.product(FORMS[:2] + FORMS[4:5], range(2)):
        _, share, lost = _run(algorithm, "1", form, seed, window=window)
        assert lost == 0, (form, seed, share)


# -- the main cases: the quota used ---------------------------------------------------------

# The least efficiency (ideal + mean answer time over last send + mean answer time) each
# case reached over the seeds when this model was built, less a margin; see the
# benchmarks page for the figures and which targets they meet.
FLOORS = {
    ("fixed", "0"): 0.9,
    ("fixed", "0.3"): 0.9,
    ("fixed", "1"): 0.85,
    ("sliding", "0"): 0.9,
    ("sliding", "0.3"): 0.9,
    ("sliding", "1"): 0.85,
    ("token_bucket", "0"): 0.95,
    ("token_bucket", "0.3"): 0.95,
    ("token_bucket", "1"): 0.9,
    ("gcra", "0"): 0.95,
    ("gcra", "0.3"): 0.95,
    ("gcra", "1"): 0.9,
    ("sliding_counter", "0.3"): 0.85,
    ("sliding_counter", "1"): 0.78,
}


@pytest.mark.parametrize(("algorithm", "latency"), list(FLOORS))
def test_the_quota_is_used_with_few_429s(algorithm: str, latency: str) -> None:
    """Retry-After in milliseconds, 40 per 2 s: near the quota, at most 1 % 429s (2.5 %
    on a sliding window counter, whose refill follows the client's own last window)."""
    most = 0.025 if algorithm == "sliding_counter" else 0.01
    for seed in range(3):
        efficiency, share, _ = _run(algorithm, latency, ("none", "ms"), seed)
        assert efficiency >= FLOORS[algorithm, latency], (seed, efficiency)
        assert share <= most, (seed, share)


@pytest.mark.parametrize("algorithm", ["fixed", "token_bucket", "gcra", "sliding_counter"])
@pytest.mark.parametrize("latency", ["0", "0.3"])
def test_reset_information_never_costs_efficiency(algorithm: str, latency: str) -> None:
    """A server that also says when its quota comes back (as a Unix time in seconds or
    milliseconds, or in whole seconds) is used at least as well as one that does not."""
    without = statistics.mean(_run(algorithm, latency, ("none", "up"), s)[0] for s in range(3))
    for reset in ("x-unix", "x-unix-ms", "x-seconds-whole"):
        runs = [_run(algorithm, latency, (reset, "up"), s)[0] for s in range(3)]
        assert statistics.mean(runs) >= without - 0.03, (reset, without, runs)


def test_one_slow_answer_delays_only_itself() -> None:
    """One answer held 4 s among 0.3 s ones costs the job far less than 4 s."""
    rule = RateLimitRule(40, 2.0, "sliding")
    network = Network(answer=AnswerTime(mean=0.3))
    plain = simulate(rule, seed=1, network=network)
    held = simulate(rule, seed=1, network=network, hold={200: 4.0})
    assert held.last_send - plain.last_send <= 0.5, (plain.last_send, held.last_send)


def test_a_limit_that_halves_mid_run_is_followed() -> None:
    """The limit dropping from 40 to 20 halfway: the model follows it, 429s only from
    requests sent on the old limit (at most what one window had in flight)."""
    rule = RateLimitRule(40, 2.0, "fixed")
    outcome = simulate(rule, change=(300, 20), network=Network(answer=AnswerTime(mean=0.3)))
    assert outcome.model.limit == 20
    assert outcome.rate_limited <= 3 + 40, outcome.rate_limited
    assert outcome.lost == 0


# -- the states -----------------------------------------------------------------------------


def test_the_first_answer_decides_whether_there_is_a_quota() -> None:
    """One request at a time until an answer; no headers: unmetered; Limit 0: closed;
    a limit: learning."""
    for info, mode in [
        (_ok(None, None), Mode.UNMETERED),
        (_ok(0, 0), Mode.CLOSED),
        (_ok(10, 9), Mode.LEARNING),
    ]:
        model = _model()
        assert model.mode is Mode.STARTING
        seq = model.grant(0.0)
        assert model.wait(0.0) == math.inf  # the first answer first
        model.answer(seq, 0.1, info)
        assert model.mode is mode


def _use_up_five(model: QuotaModel, *, answer: float) -> None:
    """A first request, then a burst of four on what its answer said is left, each
    answered *answer* seconds after it went: a quota of 5 used up."""
    seq = model.grant(0.0)
    model.answer(seq, answer, _ok(5, 4))
    burst = [model.grant(answer) for _ in range(4)]
    for n, seq in enumerate(burst):
        model.answer(seq, 2 * answer, _ok(5, 3 - n))


def test_a_step_server_is_learned_confirmed_then_used() -> None:
    """A 429 with an exact Retry-After says the window; one trial on it, then steps."""
    model = _model()
    _use_up_five(model, answer=0.01)
    assert model.wait(0.02) > 0  # nothing in hand: a probe after a while
    probe = model.grant(0.05)
    model.answer(probe, 0.06, ResponseInfo(status=429, limit=5, remaining=0, retry_after=0.95))
    assert model.mode is Mode.CONFIRMING and model.window == pytest.approx(1.0, abs=0.03)
    at = 1.04  # the burst's units are due: what the 429 said is back goes, then one trial
    while model.wait(at) == 0 and not model.probes.trial:
        model.grant(at)
    trial = model.probes.trial
    assert trial and model.wait(at) > 0  # the rest wait for the trial's answer
    model.answer(trial, at + 0.01, _ok(5, 3))
    assert model.mode is Mode.STEPS


def test_a_refusal_answered_at_once_leaves_a_trial_its_hold() -> None:
    """A 429 comes back before any lookup's work: a trial still holds the rest for
    lookups' answer times (0.3 s here), not for the 429's 1 ms."""
    model = _model()
    _use_up_five(model, answer=0.3)
    probe = model.grant(0.65)
    model.answer(probe, 0.651, ResponseInfo(status=429, limit=5, remaining=0, retry_after=0.35))
    assert model.mode is Mode.CONFIRMING and model.window == pytest.approx(1.0, abs=0.03)
    assert model.wait(1.04) == 0
    model.grant(1.04)  # the unit the 429 said is back
    at = 1.35  # the burst's units are due: one goes on the window's prediction
    assert model.wait(at) == 0
    trial = model.grant(at)
    assert model.probes.trial == trial
    assert model.wait(at + 0.1) > 0  # its answer is not overdue after 0.1 s: the rest wait


def test_a_trim_within_reconfirm_of_the_trials_window_needs_no_new_trial() -> None:
    """A window 2 % under the one a trial confirmed counts as tried; 10 % under, or one
    the trial's window was shown too short for, does not."""
    probes = Probes(reconfirm=1.04, trial_window=1.0)
    assert not probes.untried(StepWindow(0.25, lo=0.5, hi=0.98))
    assert probes.untried(StepWindow(0.25, lo=0.5, hi=0.9))
    assert probes.untried(StepWindow(0.25, lo=1.0, hi=None))  # still counted past it
    assert Probes(reconfirm=1.04).untried(StepWindow(0.25, lo=0.5, hi=0.98))  # none yet


def test_a_gradual_server_is_recognised_and_paced() -> None:
    """A burst that comes back in part, still in part later: gradual, paced at its rate."""
    rule = RateLimitRule(40, 2.0, "token_bucket")
    outcome = simulate(rule, network=Network(answer=AnswerTime(mean=0.3)))
    model = outcome.model
    assert model.mode is Mode.GRADUAL
    rate = model.refill_rate()
    assert rate is not None and 15 <= rate <= 21, rate


def test_limit_zero_probes_with_backoff() -> None:
    """Limit 0: one probe at a time, ever further apart, until it lifts."""
    model = _model()
    now = 0.0
    sent = []
    for _ in range(6):
        now += model.wait(now)
        sent.append(now)
        seq = model.grant(now)
        now += 0.01
        model.answer(seq, now, _ok(0, 0))
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert all(later >= earlier for earlier, later in itertools.pairwise(gaps))
    assert gaps[0] >= 0.4 and gaps[-1] > 4 * gaps[0]
    seq = model.grant(now + model.wait(now))
    model.answer(seq, now + 60, _ok(10, 9))  # the server lifts it
    assert model.mode is not Mode.CLOSED and model.wait(now + 60) == 0


# -- hostile values, other clients, overtaking answers ----------------------------------------


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


def test_answers_that_overtook_others_never_add_quota() -> None:
    """An answer whose request may have been overtaken cannot raise the budget."""
    model = _model()
    seq = model.grant(0.0)
    model.answer(seq, 0.01, _ok(5, 4))
    first, *_, last = [model.grant(0.02) for _ in range(4)]
    model.answer(last, 0.03, _ok(5, 0))  # counted last, answered first
    model.answer(first, 0.04, _ok(5, 3))  # counted first: older news
    assert model.limit is not None and model.limit - model.ledger.counted <= 0  # none in hand


@pytest.mark.parametrize("told", [True, False])
def test_a_request_that_leaves_late_is_not_read_as_quota_back(told: bool) -> None:
    """A request held for a new connection is overtaken by one granted after it: told
    when it left, the model keeps its unit; not told, it reads the overtaking answer
    as a unit back, for good, and would send one request too many."""
    model = _model(window=1.0)
    model.answer(model.grant(0.0), 0.005, _ok(10, 9))
    late = model.grant(0.010)  # waits for a connection
    overtaking = model.grant(0.030)  # a pooled connection: it leaves at once
    if told:
        model.left(late, 0.035)
    model.answer(overtaking, 0.040, _ok(10, 8))  # the server has counted two, not three
    assert model.ledger.counted == (3 if told else 2)
    # Older news: it cannot undo what was read (the hazard the departure is told for).
    model.answer(late, 0.045, _ok(10, 7))
    assert model.ledger.counted == (3 if told else 2)


def test_a_429_learns_from_the_units_it_shows_counted_not_from_older_ones_held() -> None:
    """A fixed window restarted by the first request after the last one ended (the
    ``limits`` package's), sent to in a dense burst with slow answers: when the burst's
    one 429 comes, the ledger still holds units of the window before that only answers
    in flight could show back. Read as still counted (with the rounded Retry-After's
    second on top), they grew the window by half at every 429: 2.3, 4.9, 8.8, 14.7 s
    against 2 s, and the job nearly stopped."""
    limit = 40
    model = _model()
    events: list[tuple[float, int, int, float]] = []  # (at, order, permit, remaining / -wait)

    def send(at: float, answer_after: float, remaining: int) -> None:
        heapq.heappush(events, (at + answer_after, len(events), model.grant(at), remaining))

    def answer_until(until: float) -> None:
        while events and events[0][0] <= until:
            at, _, seq, remaining = heapq.heappop(events)
            if remaining >= 0:
                model.answer(seq, at, _ok(limit, int(remaining)))
            else:
                info = ResponseInfo(
                    status=429, limit=limit, remaining=0, retry_after=-remaining,
                    retry_after_rounded=True,
                )  # fmt: skip
                model.answer(seq, at, info)

    send(0.0, 0.2, limit - 1)
    answer_until(0.2)
    for i in range(1, limit):  # the first window, from 0.0
        answer_until(0.2 + 0.01 * i)
        send(0.2 + 0.01 * i, 0.3, limit - 1 - i)
    send(0.6, 0.001, -2)  # refused: the window ends at 2.0 ("2": rounded up)
    answer_until(2.7)
    # The second window starts at 2.7, with the first request after the first ended. Its
    # third answer comes early: it shows the first window's units back but for those
    # the two requests sent just before it might still hold (the ledger keeps two).
    for k in range(limit):
        answer_until(2.7 + 0.005 * k)
        send(2.7 + 0.005 * k, 0.15 if k == 2 else 0.3, limit - 1 - k)
    answer_until(2.9)
    send(2.9, 0.001, -2)  # the 41st, a jitter after the last two: refused ("2" again)
    answer_until(2.95)
    assert model.steps.lo < 2.5, model.steps  # the second window's units: 1.2 s at least


def test_usage_by_another_client_is_counted() -> None:
    """More in use than we sent (another worker on the key) holds our quota back."""
    model = _model()
    seq = model.grant(0.0)
    model.answer(seq, 0.5, _ok(10, 2))  # we sent one, the server counts eight
    assert sum(model.wait(0.6) == 0 and bool(model.grant(0.6)) for _ in range(5)) == 2


def test_a_server_without_headers_is_not_modelled() -> None:
    """With no rate-limit headers at all, nothing waits and nothing piles up."""
    model = _model()
    for i in range(10_000):
        assert model.wait(float(i)) == 0
        seq = model.grant(float(i))
        model.answer(seq, i + 0.5, ResponseInfo(status=200, limit=None, remaining=None))
    assert model.ledger.counted == 0 and model.in_flight == 0


def test_the_window_of_a_policy_header_is_taken() -> None:
    """RateLimit-Policy's w= says the window outright."""
    model = _model()
    seq = model.grant(0.0)
    model.answer(seq, 0.01, ResponseInfo(status=200, limit=10, remaining=9, window=30.0))
    assert model.window == pytest.approx(30.0, abs=0.02)


# -- the shared state -------------------------------------------------------------------------


def test_the_state_goes_through_its_schema_and_back() -> None:
    """A model mid-run, dumped and loaded, decides the same."""
    rule = RateLimitRule(40, 2.0, "sliding")
    model = simulate(rule, handles=300, network=Network(answer=AnswerTime(mean=0.3))).model
    again = shared_state.load(shared_state.dump(model), upstream_pause=0.5, max_pause=60.0)
    assert shared_state.dump(again) == shared_state.dump(model)
    for t in (0.0, 30.0, 31.0, 60.0):
        assert again.wait(t) == model.wait(t)


@pytest.mark.parametrize(
    "data",
    [
        {"version": 1, "window": 0.25},  # the 0.x model's vars()
        {"version": shared_state.VERSION, "mode": "steps"},  # fields missing
        {**shared_state.dump(QuotaModel()), "mode": "warp"},
        {**shared_state.dump(QuotaModel()), "extra": 1},
        [1, 2, 3],
    ],
)
def test_another_version_of_the_state_is_refused(data: object) -> None:
    """A state of another version or shape raises StateError (the caller starts afresh)."""
    with pytest.raises(shared_state.StateError):
        shared_state.load(data, upstream_pause=0.5, max_pause=60.0)


# -- a busy client: sends that leave late -----------------------------------------------
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_client_whose_sends_leave_late_still_keeps_within_the_quota(algorithm: str) -> None:
    """Requests leaving up to 50 ms after their permits (a busy event loop) reach the
    server out of their send order; told how late each left, the model allows for it:
    few 429s, no lookup lost, the quota still used."""
    network = Network(to_server=0.01, send_lag=0.05)
    for seed in range(4):
        rule = RateLimitRule(40, 2.0, algorithm)  # type: ignore[arg-type]
        outcome = simulate(rule, handles=400, seed=seed, network=network, concurrency=32)
        assert outcome.lost == 0
        # 1-9 per run measured (blind to the lag: 30-160, and lookups lost).
        assert outcome.rate_limited <= 12, (seed, outcome.rate_limited)
        assert (400 - 40) / 20 / outcome.elapsed >= 0.8, (seed, outcome.elapsed)
        assert outcome.model.jitter > outcome.model.tuning.jitter  # the lag was counted


def test_a_model_blind_to_its_own_lag_is_refused_again_and_again() -> None:
    """The same late sends, not told to the model, read as units back early on a fixed
    window: ten times the 429s (what the measure above is for)."""
    rule = RateLimitRule(40, 2.0, "fixed")
    told = Network(to_server=0.01, send_lag=0.05)
    blind = Network(to_server=0.01, send_lag=0.05, blind=True)
    seen = {
        name: sum(
            simulate(rule, handles=400, seed=seed, network=net, concurrency=32).rate_limited
            for seed in range(3)
        )
        for name, net in (("told", told), ("blind", blind))
    }
    assert seen["blind"] >= 10 * max(seen["told"], 1), seen


@pytest.mark.parametrize("algorithm", ["token_bucket", "sliding_counter"])
def test_sends_told_as_they_leave_are_refused_less_than_told_at_their_answers(
    algorithm: str,
) -> None:
    """The same late sends, told to the model as each leaves rather than only with its
    answer: at most half the 429s (a bucket: 36 to 0, a window counter: 37 to 14 over
    six runs, measured)."""
    rule = RateLimitRule(40, 2.0, algorithm)  # type: ignore[arg-type]
    seen = {
        departures: sum(
            simulate(
                rule,
                handles=400,
                seed=seed,
                network=Network(to_server=0.01, send_lag=0.05, departures=departures),
                concurrency=32,
            ).rate_limited
            for seed in range(6)
        )
        for departures in (True, False)
    }
    assert seen[False] > 0 and seen[True] * 2 <= seen[False], seen


@pytest.mark.parametrize("algorithm", ["token_bucket", "gcra"])
def test_a_bucket_is_recognised_when_a_busy_loop_spreads_each_burst(algorithm: str) -> None:
    """A short-window bucket (20 per 0.2 s, 1 ms answers) with sends leaving up to 20 ms
    late is proved gradual in every run: a group seen back in part is looked at again
    once the proof time has passed (before, the growing probe gap missed that look in 10
    of 48 runs, which then paced half the quota as a window, the suite's old flake)."""
    network = Network(to_server=0.0005, jitter=0.0005, answer=AnswerTime(mean=0.001), send_lag=0.02)
    rule = RateLimitRule(20, 0.2, algorithm)  # type: ignore[arg-type]
    outcomes = [
        simulate(rule, handles=200, seed=seed, network=network, concurrency=16)
        for seed in range(16)  # seeds 4 and 8 were among the runs stuck at half
    ]
    assert all(outcome.lost == 0 for outcome in outcomes)
    modes = [outcome.model.mode for outcome in outcomes]
    assert all(mode is Mode.GRADUAL for mode in modes), modes
    assert all(outcome.efficiency(200, rule) >= 0.9 for outcome in outcomes)


def test_the_lag_is_the_largest_seen_halving_with_time() -> None:
    """A send later than the others raises the lag at once by its spread over the
    quickest; it halves every lag_half_life seconds; a lone slow send after a quiet spell
    (a new connection) is a new floor, not a spread; a stall counts at most lag_most."""
    model = _model()

    def answer(at: float, late: float) -> None:
        seq = model.grant(at)
        model.answer(
            seq, at + 0.01, ResponseInfo(status=200, limit=10, remaining=9, sent_late=late)
        )

    answer(0.0, 0.001)
    assert model.jitter == model.tuning.jitter  # one send: nothing to be apart from
    answer(0.02, 0.041)
    assert model.jitter == pytest.approx(model.tuning.jitter + 0.04)
    half = model.tuning.lag_half_life
    answer(half, 0.001)
    assert model.lag.value == pytest.approx(0.02, rel=0.01)
    answer(4 * half, 0.2)  # alone after a quiet spell: the floor, not a spread
    assert model.lag.value < 0.01
    answer(4 * half + 0.01, 0.0001)
    answer(4 * half + 0.02, 30.0)
    assert model.lag.value == pytest.approx(model.tuning.lag_most, abs=0.001)


def test_the_wait_for_n_requests_is_the_pause_when_quota_is_in_hand() -> None:
    """wait(now, n): with n units in hand, a pause is all there is to wait (not a
    window), and the single-request answer is what it always was."""
    model = _model(window=60.0)
    first = model.grant(0.0)
    model.answer(first, 0.01, _ok(100, 99))
    for _ in range(2):
        model.grant(0.02)
    model.pause(0.03, 1.0)
    assert model.wait(0.03) == pytest.approx(1.0)
    assert model.wait(0.03, 2) == pytest.approx(1.0)
    assert model.wait(0.03, 200) > 1.0  # more than is in hand: after units come back
    assert model.wait(1.5, 2) == 0.0
