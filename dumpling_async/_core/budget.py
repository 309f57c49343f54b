"""The credit budget: reserve before sending, settle when the answer says what was charged.

Reserving first means many requests in flight can never together overshoot
``max_credits``; a reservation that was not charged (404, error, cancellation) is given
back, so the budget is exact to the credit.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, runtime_checkable

from .._errors import BudgetExceededError

__all__ = ["CreditBudget", "LocalCreditBudget"]


@runtime_checkable
class CreditBudget(Protocol):
    """Where credits are reserved and counted; local or shared between processes."""

    @property
    def spent(self) -> int:
        """Credits charged so far, as far as this budget knows."""
        ...

    @property
    def max_credits(self) -> int | None:
        """The ceiling, or None for no ceiling."""
        ...

    async def reserve(self, cost: int) -> None:
        """Reserve *cost* credits or raise :class:`BudgetExceededError`."""
        ...

    async def settle(self, cost: int, *, charged: bool) -> None:
        """Turn a reservation into spending (*charged*) or give it back."""
        ...


class LocalCreditBudget:
    """A budget held in this process.

    A reservation that does not fit waits while other reservations are pending (they may
    be given back); it fails only when spending alone leaves no room.
    """

    def __init__(self, max_credits: int | None = None) -> None:
        if max_credits is not None and max_credits < 0:
            raise ValueError("max_credits must be >= 0")
        self._max = max_credits
        self._spent = 0
        self._reserved = 0
        self._changed: asyncio.Condition | None = None

    def __repr__(self) -> str:
        return f"LocalCreditBudget(max_credits={self._max}, spent={self._spent})"

    @property
    def spent(self) -> int:
        return self._spent

    @property
    def max_credits(self) -> int | None:
        return self._max

    async def reserve(self, cost: int) -> None:
        if self._max is None:
            self._reserved += cost
            return
        if self._changed is None:
            self._changed = asyncio.Condition()
        async with self._changed:
            while self._spent + self._reserved + cost > self._max:
                if self._spent + cost > self._max or self._reserved == 0:
                    raise BudgetExceededError(
                        f"credit budget reached: {self._spent} of {self._max} credits spent"
                    )
                await self._changed.wait()
            self._reserved += cost

    async def settle(self, cost: int, *, charged: bool) -> None:
        self._reserved -= cost
        if charged:
            self._spent += cost
        if self._changed is not None:
            async with self._changed:
                self._changed.notify_all()
