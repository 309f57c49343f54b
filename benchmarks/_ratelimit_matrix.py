"""The scenarios of ``benchmarks.ratelimit``: quotas, answer times, servers, and what each
one's ideal, perfect-client time and targets are (see that module's docstring)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import attrs

from dumpling_async.testing import RateLimitRule
from dumpling_async.testing._quota import Window

if TYPE_CHECKING:
    from dumpling_async.testing import AnswerTime

__all__ = [
    "BASE",
    "DEFAULT_LATENCIES",
    "EXTRAS",
    "LATENCIES",
    "QUOTAS",
    "RESET_FORMS",
    "SCENARIOS",
    "Latency",
    "Quota",
    "Scenario",
    "build_matrix",
    "parse_latency",
]

BASE = ("fixed", "sliding", "sliding_counter", "token_bucket", "gcra")
LIMITS = ("limits:fixed", "limits:moving", "limits:sliding_counter")
EXTRAS = ("upstash", "fixed-aligned", "bucket-size", "floored-ra", "halving", *LIMITS)
SCENARIOS = BASE + EXTRAS
RESET_FORMS = (
    "none",
    "x-seconds",
    "x-seconds-whole",
    "x-unix",
    "x-unix-ms",
    "ietf",
    "ietf-structured",
)
MATRIX_RESETS = ("none", "x-unix")  # every BASE algorithm runs with each
TARGET_EFFICIENCY, TARGET_RELATIVE, TARGET_429 = 0.95, 0.97, 0.005
# The fake algorithm each limits strategy runs (to simulate the perfect client).
_LIMITS_AS = {"fixed": "fixed", "moving": "sliding", "sliding_counter": "sliding_counter"}


@dataclass(frozen=True)
class Quota:
    name: str
    limit: int
    window: float
    handles: int
    refill: int | None = None  # token bucket: tokens back per window (None: the limit)

    @property
    def rate(self) -> float:
        """The sustainable rate, per second."""
        return (self.refill or self.limit) / self.window

    def describe(self) -> str:
        refill = f" refill {self.refill}" if self.refill is not None else ""
        return f"{self.limit}/{self.window:g}s{refill} x{self.handles}"


QUOTAS = {
    "standard": Quota("standard", 40, 2.0, 600),
    "fast": Quota("fast", 40, 0.5, 600),
    "quick": Quota("quick", 40, 0.5, 200),
    "long": Quota("long", 30, 60.0, 120),
}


@dataclass(frozen=True)
class Latency:
    """The fake server's answer time: ``AnswerTime(mean, spread=0.5, ...)``."""

    label: str
    mean: float
    tail_every: int | None = None
    tail_factor: float = 10.0
    spread: float = 0.5

    def answer_time(self) -> AnswerTime:
        from dumpling_async.testing import AnswerTime

        return AnswerTime(
            mean=self.mean,
            spread=self.spread,
            tail_every=self.tail_every,
            tail_factor=self.tail_factor,
        )

    def describe(self) -> str:
        text = "~0" if self.mean == 0 else f"{self.mean:g} s"
        if self.tail_every is not None:
            text += f" tail 1/{self.tail_every} x{self.tail_factor:g}"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "mean": self.mean,
            "spread": self.spread,
            "tail_every": self.tail_every,
            "tail_factor": self.tail_factor,
        }


LATENCIES = {
    "0": Latency("0", 0.0),
    "0.3": Latency("0.3", 0.3),
    "1": Latency("1", 1.0),
    "3": Latency("3", 3.0),
    "1-tail": Latency("1-tail", 1.0, tail_every=20),
}
DEFAULT_LATENCIES = ("0", "0.3", "1", "3", "1-tail")  # of BASE
EXTRA_LATENCIES = ("0", "1")  # of EXTRAS


def parse_latency(text: str) -> Latency:
    """``0``, ``0.3``, ``1``, ``3``, ``1-tail`` or any seconds (``2.5``, ``2.5-tail``)."""
    if text in LATENCIES:
        return LATENCIES[text]
    seconds, tail = (text.removesuffix("-tail"), text.endswith("-tail"))
    try:
        mean = float(seconds)
    except ValueError:
        raise ValueError(f"a latency is seconds, optionally with -tail: {text!r}") from None
    if not (math.isfinite(mean) and mean >= 0):
        raise ValueError(f"a latency must be >= 0 seconds: {text!r}")
    return Latency(f"{mean:g}" + ("-tail" if tail else ""), mean, 20 if tail else None)


@dataclass(frozen=True)
class Scenario:
    """One server configuration at one answer time; its rows are its contenders."""

    name: str  # one of SCENARIOS
    algorithm: str  # the fake server's algorithm (what a limits strategy corresponds to)
    quota: Quota
    latency: Latency
    reset: str = "none"  # the fake server's reset_headers ("none" for a limits server)
    rule_options: tuple[tuple[str, Any], ...] = ()  # RateLimitRule keywords
    server_options: tuple[tuple[str, Any], ...] = ()  # more FakeDumplingServer keywords
    halving: bool = False  # the limit halves once half the handles were charged
    backend: str = "fake"
    phased: bool = False  # windows aligned to Unix time: runs start at spread phases
    peers: bool = True  # the peers run (they also need reset "none")

    @property
    def rule(self) -> RateLimitRule:
        options = dict(self.rule_options)
        if self.quota.refill is not None:
            options["refill"] = self.quota.refill
        return RateLimitRule(self.quota.limit, self.quota.window, self.algorithm, **options)  # type: ignore[arg-type]

    @property
    def runs_peers(self) -> bool:
        return self.peers and self.reset == "none"

    @property
    def halve_after(self) -> int | None:
        return self.quota.handles // 2 if self.halving else None

    @property
    def relative_target(self) -> bool:
        """The sliding window counter's target is relative to a perfect client's."""
        return self.algorithm == "sliding_counter"

    def describe(self) -> str:
        return f"{self.name} {self.quota.describe()} {self.latency.describe()} reset={self.reset}"

    def server_kwargs(self, seed: int) -> dict[str, Any]:
        """``ServerProcess`` options: the answer time, headers and server options."""
        options: dict[str, Any] = {"latency": self.latency.answer_time(), "latency_seed": seed}
        if self.backend == "fake":
            options["reset_headers"] = self.reset
            options.update(self.server_options)
        return options

    def ideal_seconds(self, delivered: int | None = None) -> float:
        """(delivered - limit) / rate, per phase when the limit halves."""
        n = self.quota.handles if delivered is None else delivered
        limit, rate = self.quota.limit, self.quota.rate
        first = n if self.halve_after is None else min(n, self.halve_after)
        seconds = max(0, first - limit) / rate
        if self.halve_after is not None and n > self.halve_after:
            seconds += (n - self.halve_after) / (max(1, limit // 2) / self.quota.window)
        return seconds

    def perfect_seconds(self, phase: float = 0.0) -> float:
        """When a perfect client would be done: every request at the first instant the
        server's algorithm allows it, no answer time. *phase*: seconds into its first
        aligned window the job starts (a perfect client is never refused, so lockout and
        the reset header change nothing)."""
        rule = attrs.evolve(self.rule, aligned=False, lockout=False, window_end_reset=False)
        window = Window(rule, -phase)
        now = 0.0
        for i in range(self.quota.handles):
            if i == self.halve_after:
                window.set_limit(max(1, self.quota.limit // 2))
            while (wait := window.take(now)) is not None:
                now += wait
        return now

    def expected_seconds(self) -> float:
        """A guess at one run's wall time (for scheduling and the estimate)."""
        phase = self.quota.window / 2 if self.phased else 0.0
        wait = phase or (0.5 if self.reset == "x-unix" else 0.0)  # to the start phase
        tail = self.latency.tail_factor if self.latency.tail_every else 1.5
        return wait + self.perfect_seconds(phase) + self.latency.mean * tail + 2.0


def _base(name: str, quota: Quota, latency: Latency, resets: Iterable[str]) -> list[Scenario]:
    return [Scenario(name, name, quota, latency, reset) for reset in resets]


def _extra(name: str, quota: Quota, latency: Latency) -> list[Scenario]:
    options: tuple[tuple[str, Any], ...]
    if name == "upstash":
        options = (("aligned", True), ("lockout", True), ("window_end_reset", True))
        return [
            Scenario(name, "sliding_counter", quota, latency, "x-unix-ms", options, phased=True)
        ]
    if name == "fixed-aligned":
        options = (("aligned", True),)
        return [Scenario(name, "fixed", quota, latency, "x-unix", options, phased=True)]
    if name == "bucket-size":
        bucket = Quota("bucket", quota.limit, quota.window, quota.handles, max(1, quota.limit // 4))
        return [Scenario(name, "token_bucket", bucket, latency)]
    if name == "floored-ra":  # the peers never read Retry-After: their fixed rows stand
        server = (("retry_after_rounding", "down"), ("retry_after_ms", False))
        return [Scenario(name, "fixed", quota, latency, server_options=server, peers=False)]
    if name == "halving":
        return [Scenario(name, "fixed", quota, latency, r, halving=True) for r in MATRIX_RESETS]
    strategy = name.removeprefix("limits:")
    return [
        Scenario(
            name,
            _LIMITS_AS[strategy],
            quota,
            latency,
            backend=f"limits-{strategy}",
            phased=strategy == "sliding_counter",  # limits aligns it to Unix time
        )
    ]


def build_matrix(
    names: Sequence[str],
    quota: Quota,
    latencies: Sequence[Latency] | None,
    extra_resets: Sequence[str] = (),
    *,
    base_resets: Sequence[str] = MATRIX_RESETS,
    long_window: bool = False,
) -> list[Scenario]:
    """*names* (of SCENARIOS) at *latencies* (None: each one's default set): a BASE
    algorithm with each of *base_resets* and *extra_resets*; then ``--long-window``."""
    resets = list(dict.fromkeys([*base_resets, *extra_resets]))
    scenarios: list[Scenario] = []
    for name in names:
        chosen = latencies or [
            LATENCIES[k] for k in (DEFAULT_LATENCIES if name in BASE else EXTRA_LATENCIES)
        ]
        for latency in chosen:
            if name in BASE:
                scenarios += _base(name, quota, latency, resets)
            else:
                scenarios += _extra(name, quota, latency)
    if long_window:
        for latency in latencies or [LATENCIES["1"]]:
            scenarios += _base("fixed", QUOTAS["long"], latency, MATRIX_RESETS)
    return scenarios
