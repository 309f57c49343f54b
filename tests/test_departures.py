"""Tests of how unevenly requests leave the client (``_core.departures``)."""

from __future__ import annotations

import pytest

from dumpling_async._core.departures import Departures


def _left(*times: float) -> Departures:
    departures = Departures()
    for at in times:
        departures.left(at)
    return departures


def test_a_request_held_while_nothing_else_left_has_no_lag() -> None:
    """A lone request held 0.2 s (a stall of the whole client) reorders nothing: lag 0."""
    departures = _left(0.0, 0.01, 0.3)
    assert departures.lag(0.1, 0.3) == 0.0


def test_a_request_held_while_others_left_has_their_spread() -> None:
    """Held 50 ms while others left every 10 ms: its wait less the longest spell with none."""
    departures = _left(0.01, 0.02, 0.03, 0.04, 0.05)
    assert departures.lag(0.0, 0.05) == pytest.approx(0.04)


def test_a_burst_held_by_a_stall_counts_only_its_own_spread() -> None:
    """A request ready at 0 and held through a 0.3 s stall while a burst left: its wait
    less the stall, 3 ms, not 0.3 s."""
    departures = _left(0.0, 0.001, 0.3, 0.301, 0.302)
    assert departures.lag(0.0, 0.302) == pytest.approx(0.002 + 0.001, abs=1e-9)


def test_only_recent_departures_are_kept() -> None:
    """The times kept are bounded; a request's wait is judged on those within it."""
    departures = _left(*(i * 0.001 for i in range(10_000)))
    assert len(departures._times) < 10_000
    assert departures.lag(9.990, 9.999) == pytest.approx(0.008)
