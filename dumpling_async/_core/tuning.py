"""The quota model's tuning numbers, each with the reason for its value."""

from __future__ import annotations

import attrs

__all__ = ["Tuning"]


@attrs.frozen(kw_only=True)
class Tuning:
    """The model's numbers, and why each is what it is."""

    # Two requests sent together may reach the server this far apart (network jitter):
    # an answer is matched to the ledger with this slack, and a unit predicted back is
    # expected this much late.
    jitter: float = 0.010
    # The client's own lag in sending (a busy event loop, a connection being opened) is
    # added to it: the largest seen, halving every lag_half_life seconds, at most
    # lag_most (a loop stalled longer is not the quota's business).
    lag_half_life: float = 10.0
    lag_most: float = 0.25
    # While learning, probes go ever further apart (guess, guess * growth, ...), one at a
    # time: the first 429's Retry-After usually says the window outright; without one,
    # a window of an hour is reached in a dozen probes.
    probe_growth: float = 2.0
    # A window bracket this narrow (hi / lo) is used as learned and no longer tested.
    tight: float = 1.04
    # Gradual servers are paced at this share of the measured refill rate: what is
    # confirmed by answers tops it up, a rate measured a little high would be refused.
    gradual_share: float = 0.97
    # A group of at least this many units sent together that comes back only in part is
    # a gradual server (a step server returns a group whole).
    partial_group: int = 4
    # A 429 on a gradual server slows the pace by this factor (once per round of
    # requests: those sent before the slow-down meet the same excess), down to
    # pace_floor; each answer that shows spare quota after it speeds it up again.
    slow_down: float = 0.9
    pace_floor: float = 0.5
    speed_up: float = 1.01
    # While learning, the first probe goes this soon after the quota was used up: it is
    # refused, and a server that says Retry-After in milliseconds tells the window with
    # that one 429.
    first_probe: float = 0.02
    # A probe or trial unanswered after this many of the fastest answer times no longer
    # holds the next one (a slow answer delays only itself).
    overdue: float = 4.0
    # The window is tested only while the fastest answer takes less than 1/this of it:
    # each test is tried by a burst first, which costs a round trip.
    test_latency: float = 4.0
    # A trial sent later than this share of the window after the unit it counted on was
    # due tests nothing (a unit long overdue would be back anyway).
    trial_slack: float = 0.1
    # A window shorter than the one a trial confirmed is tried by a trial again, unless
    # within this factor of it: each trial holds the rest for an answer's time, and the
    # answers of a steady run trim a window by a percent or two at a time.
    reconfirm: float = 1.04
    # A group seen back in part, and still in part this many jitters later, is coming back
    # gradually: a step server would have returned it whole by then.
    gradual_proof: float = 4.0
    # A gradual server's rate is measured over the units of this many quotas: fewer, and
    # one early answer skews it.
    rate_quotas: int = 2
    # A 429 on a gradual server whose wait is this many units' refill time means quota
    # comes back in steps after all (a fixed window read as gradual).
    step_wait: float = 8.0
    # Limit: 0 is probed after this wait, doubling up to the second number.
    closed_backoff: tuple[float, float] = (0.5, 30.0)
    window_range: tuple[float, float] = (0.005, 3600.0)
