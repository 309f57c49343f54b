"""The requests the quota model sends to learn what it does not know yet.

- While learning, a *probe* goes without quota in hand: it may be refused, and its 429's
  Retry-After usually says the window. One is out at a time, ever further apart, but
  one goes when a group seen back in part can show whether it still is.
- While confirming, a *trial* goes on a window's prediction: the rest wait for its
  answer, which holds when it found a whole group back on time.
- While a window is only bracketed, one unit of each burst tests its middle.

A probe or trial unanswered for a few answer times no longer holds the next one: a slow
answer delays only itself.
"""

from __future__ import annotations

import attrs

from .window import StepWindow

__all__ = ["Probes"]


@attrs.define
class Probes:
    """When the next probe may go, and the probe and trial out now (0: none)."""

    at: float = 0.0  # when the next probe may go
    gap: float = 0.25  # and how long after it the one after may
    risky: int = 0  # a probe sent without quota in hand
    trial: int = 0  # a send on a window's prediction
    trial_window: float = 0.0  # the window it tested (1e18: it went too late to test one)
    trial_expect: int = 0  # units the window said were back when it went
    reconfirm: float = attrs.field(kw_only=True)  # ``Tuning.reconfirm``

    def next(self, now: float, growth: float) -> None:
        """A probe went now: the next waits a growing gap."""
        self.at = now + self.gap
        self.gap *= growth

    def look_again(self, at: float, now: float) -> None:
        """A group seen back in part proves a gradual server if still in part at *at*:
        the next probe goes no later (a gap grown past it would find the group whole back,
        and prove nothing)."""
        if now < at:
            self.at = min(self.at, at)

    def ended(self, seq: int) -> bool:
        """Permit *seq* ended (answered, cancelled or forgotten); True if it was the
        trial, whose answer the caller judges."""
        if seq == self.risky:
            self.risky = 0
        if seq == self.trial:
            self.trial = 0
            return True
        return False

    def out(self, seq: int, sent: float | None, now: float, overdue: float) -> bool:
        """*seq* is out and not yet *overdue* seconds old (a probe: nor its gap)."""
        return now < self.free_at(seq, sent, now, overdue)

    def free_at(self, seq: int, sent: float | None, now: float, overdue: float) -> float:
        """When *seq* no longer holds the next one (now, if it is not out)."""
        if not seq:
            return now
        held = max(self.gap, overdue) if seq == self.risky else overdue
        return (now if sent is None else sent) + held

    def holds(self, *, group: int, remaining: int, steps: StepWindow) -> bool:
        """The trial's answer: it went when the window said a whole *group* was back (a
        gradual server returns one at a time) and found it back, on a window it tried
        (a 429 is judged by the caller)."""
        expect = self.trial_expect
        return expect >= group and remaining + 1 >= expect and not self.untried(steps)

    def untried(self, steps: StepWindow) -> bool:
        """The window is shorter than the last trial's by more than ``reconfirm`` (the
        steady trims a run's answers make need no trial of their own), or that trial's
        window was wrong: a unit was seen still counted for longer."""
        tried = self.trial_window
        return steps.value * self.reconfirm < tried - 1e-9 or steps.lo >= tried
