"""The fake server's per-key rate limit: fixed window, sliding window or token bucket."""

from __future__ import annotations

import math
from collections import deque
from typing import Literal

import attrs

__all__ = ["Algorithm", "RateLimitRule", "Window"]

Algorithm = Literal["fixed", "sliding", "token_bucket"]


@attrs.frozen
class RateLimitRule:
    """``limit`` requests per ``window`` seconds per API key, by ``algorithm``."""

    limit: int
    window: float
    algorithm: Algorithm = "fixed"


class Window:
    """Server-side quota state for one key."""

    def __init__(self, rule: RateLimitRule, now: float) -> None:
        self.rule = rule
        self.limit = rule.limit
        self.start = now
        self.count = 0
        self.log: deque[float] = deque()
        self.tokens = float(rule.limit)
        self.stamp = now

    def _refresh(self, now: float) -> None:
        rule = self.rule
        if rule.algorithm == "fixed":
            if now - self.start >= rule.window:
                self.start += math.floor((now - self.start) / rule.window) * rule.window
                self.count = 0
        elif rule.algorithm == "sliding":
            while self.log and self.log[0] + rule.window <= now:
                self.log.popleft()
        else:
            rate = self.limit / rule.window
            self.tokens = min(float(self.limit), self.tokens + (now - self.stamp) * rate)
            self.stamp = now

    def remaining(self, now: float) -> int:
        self._refresh(now)
        if self.rule.algorithm == "fixed":
            return max(0, self.limit - self.count)
        if self.rule.algorithm == "sliding":
            return max(0, self.limit - len(self.log))
        return max(0, math.floor(self.tokens))

    def take(self, now: float) -> float | None:
        """Count one request; None when allowed, else seconds until one would be."""
        if self.remaining(now) <= 0:
            rule = self.rule
            if rule.algorithm == "fixed":
                return self.start + rule.window - now
            if rule.algorithm == "sliding":
                excess = len(self.log) - self.limit
                return self.log[excess] + rule.window - now
            return (1.0 - self.tokens) / (self.limit / rule.window)
        if self.rule.algorithm == "fixed":
            self.count += 1
        elif self.rule.algorithm == "sliding":
            self.log.append(now)
        else:
            self.tokens -= 1.0
        return None
