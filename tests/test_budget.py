"""LocalCreditBudget: reserve before sending, settle after, never past max_credits."""

from __future__ import annotations

import asyncio

import pytest

from dumpling_async import BudgetExceededError, LocalCreditBudget


async def test_reservations_settle_to_spending_or_back() -> None:
    """A charged reservation becomes spending; an uncharged one is given back."""
    budget = LocalCreditBudget(30)
    await budget.reserve(10)
    await budget.reserve(10)
    await budget.settle(10, charged=True)
    await budget.settle(10, charged=False)
    assert budget.spent == 10
    await budget.reserve(20)  # the given-back reservation made room
    await budget.settle(20, charged=True)
    assert budget.spent == 30
    with pytest.raises(BudgetExceededError, match="30 of 30"):
        await budget.reserve(1)


async def test_a_reservation_waits_for_pending_ones_that_may_come_back() -> None:
    """With the room held by a pending reservation, the next waits for its fate."""
    budget = LocalCreditBudget(10)
    await budget.reserve(10)
    waiter = asyncio.ensure_future(budget.reserve(10))
    await asyncio.sleep(0)
    assert not waiter.done()
    await budget.settle(10, charged=False)  # not charged: the waiter fits now
    await asyncio.wait_for(waiter, 1)
    await budget.settle(10, charged=True)
    assert budget.spent == 10


async def test_a_waiter_fails_when_the_pending_one_was_charged() -> None:
    """When the pending reservation turns into spending, the waiter gets BudgetExceededError."""
    budget = LocalCreditBudget(15)
    await budget.reserve(10)
    waiter = asyncio.ensure_future(budget.reserve(10))
    await asyncio.sleep(0)
    await budget.settle(10, charged=True)
    with pytest.raises(BudgetExceededError):
        await asyncio.wait_for(waiter, 1)


async def test_concurrent_reservations_never_overshoot() -> None:
    """Fifty tasks reserving and charging at once end exactly at the ceiling."""
    budget = LocalCreditBudget(200)

    async def spend() -> bool:
        try:
            await budget.reserve(10)
        except BudgetExceededError:
            return False
        await asyncio.sleep(0.001)
        await budget.settle(10, charged=True)
        return True

    results = await asyncio.gather(*(spend() for _ in range(50)))
    assert sum(results) == 20 and budget.spent == 200


async def test_no_ceiling_still_counts() -> None:
    """Without max_credits nothing is refused and spending is still counted."""
    budget = LocalCreditBudget()
    for _ in range(5):
        await budget.reserve(10)
        await budget.settle(10, charged=True)
    assert budget.spent == 50 and budget.max_credits is None
    with pytest.raises(ValueError, match="max_credits"):
        LocalCreditBudget(-1)
