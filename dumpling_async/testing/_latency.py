"""The fake server's answer time: how long it takes to answer a request it has counted.

A real API does not answer in a constant time: answers spread around a mean, and now and
then one is much slower (a cold cache, a slow upstream). ``AnswerTime`` draws such times
from a ``random.Random`` the caller owns, so a seeded server is reproducible and a
simulator on a simulated clock can draw the same times without sleeping.
"""

from __future__ import annotations

import math
import random

import attrs

__all__ = ["AnswerTime"]


def _seconds(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{attribute.name} must be a finite number >= 0, got {value}")


def _share(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0 <= value <= 1:
        raise ValueError(f"{attribute.name} must be between 0 and 1, got {value}")


def _every(instance: object, attribute: attrs.Attribute[int | None], value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"{attribute.name} must be >= 1 or None, got {value}")


def _factor(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (math.isfinite(value) and value >= 1):
        raise ValueError(f"{attribute.name} must be a finite number >= 1, got {value}")


@attrs.frozen(kw_only=True)
class AnswerTime:
    """How long the server takes to answer after it counted a request.

    Uniform in ``[mean * (1 - spread), mean * (1 + spread)]`` seconds; with
    ``tail_every=N``, one answer in N (drawn at random, not every Nth) is
    ``tail_factor`` times slower, the slow tail real APIs have. Never below ``minimum``
    when ``mean > 0`` (no real answer is instant); ``mean=0`` always gives 0.
    """

    mean: float = attrs.field(validator=_seconds)
    spread: float = attrs.field(default=0.5, validator=_share)
    tail_every: int | None = attrs.field(default=None, validator=_every)
    tail_factor: float = attrs.field(default=10.0, validator=_factor)
    minimum: float = attrs.field(default=0.005, validator=_seconds)

    def sample(self, rng: random.Random) -> float:
        """One answer time in seconds, drawn from *rng*."""
        if self.mean == 0:
            return 0.0
        seconds = rng.uniform(self.mean * (1 - self.spread), self.mean * (1 + self.spread))
        if self.tail_every is not None and rng.randrange(self.tail_every) == 0:
            seconds *= self.tail_factor
        return max(self.minimum, seconds)
