"""Tests of the quota model's ledger (``_core.ledger``): what an answer proves."""

from __future__ import annotations

from dumpling_async._core.ledger import Ledger

JITTER = 0.010


def _ledger(*groups: tuple[float, int]) -> Ledger:
    ledger = Ledger()
    for stamp, units in groups:
        ledger.add(stamp, units)
    return ledger


def test_a_count_the_near_units_explain_proves_no_group_still_counted() -> None:
    """A fixed window's new burst explains its answer's count: the old group is not seen in part."""
    ledger = _ledger((0.81, 15), (1.02, 13))  # an old burst; a new one after the reset
    found = ledger.reconcile(1.025, 12, counted_itself=True, jitter=JITTER, fresh=True)
    assert found.popped == 4  # at least these are back
    assert found.split_group == 0  # the rest may be back too: the new burst is the 12


def test_a_lone_request_proves_the_rest_of_a_group_still_counted() -> None:
    """A request sent alone, counted with part of an old group, sees that group back in part."""
    ledger = _ledger((0.81, 15), (1.02, 1))
    found = ledger.reconcile(1.02, 12, counted_itself=True, jitter=JITTER, fresh=True)
    assert found.popped == 4
    assert found.split_group == 11  # only the old group can be the other 11


def test_near_units_prove_what_they_cannot_explain() -> None:
    """Of the old group kept, the units the near ones cannot account for are proven."""
    ledger = _ledger((0.81, 15), (1.02, 3))
    found = ledger.reconcile(1.02, 12, counted_itself=True, jitter=JITTER, fresh=True)
    assert found.popped == 4
    assert found.split_group == 9  # 12 in use, at most 3 of them near: 9 old proven
