"""The server's quota as the client believes it: a pure model, learned from every answer.

The vendor says how many requests remain but not when used ones count again, and servers
run different algorithms: a fixed window returns the whole quota at its boundary, a
sliding log returns each request a window after it was counted, a token bucket, GCRA or
a sliding window counter return it gradually. The model keeps three things:

- **confirmed quota**: the freshest answer's Remaining, minus our requests the server had
  not counted yet. Spending it is safe whatever the algorithm, so it is spent at once.
- **a log** of what the server still counts (our sends, and blocks of usage we did not
  send), each believed to count for ``window`` seconds. When the confirmed quota is
  gone, one probe goes when the model says a unit is back; its answer re-syncs the model.
  The window is learned: from ``Retry-After`` on a 429, from the server's own policy
  (``RateLimit-Policy: ...;w=``) or reset time when it sends one, and it shrinks while
  probes keep finding quota to spare.
- **a trickle**: when a probe finds that only part of what was due came back (the server
  returns quota gradually), probes follow at the refill rate instead of a window later.

It takes the time as an argument and does no I/O, so the same model runs in-process
(``AdaptiveRateLimiter``) and is tested with a controlled clock. Every header value is
untrusted: the limit is capped, Remaining clamped to ``[0, limit]``, ``Limit: 0`` means
paused until the server says otherwise, and memory does not depend on the numbers' size
(usage we did not send is kept as counts, not one entry per request).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import attrs

__all__ = ["MAX_LIMIT", "QuotaModel", "ResponseInfo"]

MAX_LIMIT = 1_000_000  # no real plan is larger; a bigger header is capped to this
MIN_WINDOW, MAX_WINDOW = 0.005, 3600.0
_ZERO_BACKOFF = (0.5, 30.0)  # probing a server that says Limit: 0, first and longest wait
_CLOSE = 1.04  # a window bracket this tight is learned; a wider one is halved by a test
_TRICKLE_UNITS = 2.0  # a trickle probe goes when this many units are expected back
# A trickle that met this many 429s, more than one per this many grants, was a step
# server (a sliding log) misread while its window was under test.
_STEP_429S, _STEP_GRANTS = 4, 8


@attrs.frozen(kw_only=True)
class ResponseInfo:
    """What the limiter needs to know of a response (all header values already parsed
    and bounded; None when absent or unusable)."""

    status: int
    limit: int | None
    remaining: int | None
    retry_after: float | None = None
    retry_after_rounded: bool = False  # whole seconds: the true wait may be up to 1 s less
    reset: float | None = None  # seconds until used quota comes back, as the server says
    reset_rounded: bool = False  # whole seconds: the reset may come up to 1 s sooner
    window: float | None = None  # the server's own window (RateLimit-Policy w=)


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


class QuotaModel:
    """The model of one API key's quota; see the module docstring. Times are seconds on
    any monotonic clock, passed in by the caller."""

    def __init__(self, *, window: float, upstream_pause: float, max_pause: float) -> None:
        self.window = _clamp(window, MIN_WINDOW, MAX_WINDOW)
        self.learned = False  # the window came from the server, not the first guess
        self.limit: int | None = None
        self.remaining: int | None = None
        self.rate_limited = 0
        self.upstream_pause = upstream_pause
        self.max_pause = max_pause
        self.paused_until = 0.0
        self._answered = False
        self._log: deque[list[float]] = deque()  # [stamp, units], oldest first
        self._counted = 0  # units in the log: what the server counts or will count
        self._in_flight: dict[int, float] = {}  # seq -> sent at
        self._seq = 0
        # When the answer Remaining was last taken from arrived: only a request sent after
        # that was surely counted after it, so only its answer may raise the budget.
        self._synced_at = -1e18
        self._used_since = 0  # the most in use any answer showed since that one arrived
        self._shrunk = False  # the limit dropped and no positive Remaining since
        self._probe = 0  # the permit testing predicted quota, if one is out
        self._probe_at = 0.0
        self._pivot = 0.0  # the stamp of the unit the probe expected back
        self._latencies: deque[tuple[float, float]] = deque()  # (answered, seconds)
        # Step servers: a precise Retry-After tells the window (``_exact``); without one it
        # lies in (lo, hi], narrowed by testing its middle, one probe at a time.
        self._exact = False
        self._lo = 0.0
        self._hi: float | None = None
        # Gradual servers: the refill rate, measured as the units the server granted since
        # the mode began over the time since; the quota was last drained at _drained_at.
        self._gradual = False
        self._gradual_since = 0.0
        self._granted = 0.0  # units the server granted since _gradual_since
        self._granted_at = 0.0  # when the last of them was
        self._trickle_429s = 0  # 429s met since the gradual mode began
        self._stepped = False  # the gradual mode met too many 429s: a step server after all
        # What we measure is what we took: while probes keep finding quota to spare, ask
        # a little faster (a window counter refills as fast as the last window was used).
        self._boost = 1.0
        self._drained_at = 0.0
        self._reset_at: float | None = None  # when the server said its quota comes back
        self._reset_rounded = False
        self._reset_exact = False  # said with nothing left: when the next unit is back
        self._grown_for = -1.0  # the pause in which the window last grew without a hint
        self._zero_wait = _ZERO_BACKOFF[0]

    # -- shared state -----------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """The model as plain data (for Redis, shared by many workers)."""
        state = {
            name: value
            for name, value in vars(self).items()
            if name not in ("upstream_pause", "max_pause")
        }
        state["_log"] = [list(entry) for entry in self._log]
        state["_latencies"] = [list(entry) for entry in self._latencies]
        state["_in_flight"] = [[seq, sent] for seq, sent in self._in_flight.items()]
        return state

    @classmethod
    def from_state(
        cls, state: dict[str, Any], *, upstream_pause: float, max_pause: float
    ) -> QuotaModel:
        """A model from ``to_state()``'s data (unknown or missing fields keep defaults)."""
        model = cls(window=state.get("window", 0.25), upstream_pause=upstream_pause,
                    max_pause=max_pause)  # fmt: skip
        defaults = vars(model)
        for name, value in state.items():
            if name in defaults and name not in ("_log", "_latencies", "_in_flight"):
                setattr(model, name, value)
        model._log = deque([float(stamp), float(units)] for stamp, units in state.get("_log", []))
        model._latencies = deque((float(a), float(b)) for a, b in state.get("_latencies", []))
        model._in_flight = {int(seq): float(sent) for seq, sent in state.get("_in_flight", [])}
        return model

    def expire(self, now: float, stale_after: float) -> None:
        """Forget requests in flight for longer than *stale_after* (their worker is gone;
        what they used stays counted until the server says otherwise)."""
        stale = [seq for seq, sent in self._in_flight.items() if now - sent > stale_after]
        for seq in stale:
            del self._in_flight[seq]
            if seq == self._probe:
                self._probe = 0

    # -- what may go now --------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def refill_rate(self) -> float | None:
        """Units per second the server returns, as learned (None before any limit)."""
        if not self.limit:
            return None
        return self._rate(self._granted_at) if self._gradual else self.limit / self.window

    @property
    def gradual(self) -> bool:
        """The server returns used quota gradually (a bucket, GCRA, a window counter)."""
        return self._gradual

    def wait(self, now: float) -> float:
        """0 when a request may go now, else how long until the model says one may
        (``math.inf``: until an answer arrives)."""
        if now < self.paused_until:
            return self.paused_until - now
        if self.limit is None:
            # No header yet: one request learns the limit; a server that sends none is
            # not throttled at all.
            return 0.0 if self._answered or not self._in_flight else math.inf
        if self.limit - self._counted > 0:
            return 0.0  # confirmed by the server
        if self._probe:
            stuck = self._probe_at + self.window + self._slowest(now)
            if now < stuck:
                return stuck - now  # its answer re-syncs us; past this it no longer blocks
        return max(0.0, self._next_return(now) - now)

    def spare(self) -> float:
        """How many requests may go at once when ``wait()`` says one may: more than one
        only on unused quota the server confirmed (``math.inf``: no limit is known)."""
        if self.limit is None:
            return math.inf if self._answered else 1.0
        return max(1.0, float(self.limit - self._counted))

    def _next_return(self, now: float) -> float:
        """When the model expects one more unit to be free."""
        if self.limit == 0:
            return self._probe_at + self._zero_wait
        if self._gradual:
            guess = self._drained_at + _TRICKLE_UNITS / self._rate(now)
        else:
            guess = self._oldest_needed() + self.window + self._slowest(now)
        reset = self._reset_at
        if reset is None or reset <= now - self.window:
            return guess
        # The server said when its quota comes back. Said with nothing left, that is when
        # the next unit is (the end of a fixed window, the next token): nothing to guess.
        # Said with some left, it is when the whole quota is back: never wait past it.
        # Whole seconds may be up to 1 s late, so our guess may go first, not before the
        # earliest the server allows.
        if self._reset_exact or not (self.learned or self._gradual):
            guess = reset
        earliest = reset - 1.0 if self._reset_rounded else -math.inf
        return max(earliest, min(reset, guess))

    def _oldest_needed(self) -> float:
        """The stamp of the unit whose return frees one more request."""
        need = self._counted - (self.limit or 0) + 1
        for stamp, units in self._log:
            need -= int(units)
            if need <= 0:
                return stamp
        return self._log[-1][0] if self._log else 0.0

    # -- the permit's life ------------------------------------------------------------
    def grant(self, now: float) -> int:
        """Record a request sent now; its permit number."""
        self._seq += 1
        speculative = self.limit is not None and self.limit - self._counted <= 0
        if self.limit is not None and self.limit - self._counted == 1:
            self._drained_at = now  # this takes the last unit the server confirmed
        if speculative or (self.limit is None and not self._answered):
            self._probe, self._probe_at = self._seq, now
            self._pivot = self._oldest_needed() if self._log else now
        self._in_flight[self._seq] = now
        if self.limit is not None or not self._answered:
            self._add(now, 1)  # a server that sends no limit is not modelled at all
        return self._seq

    def cancel(self, seq: int) -> None:
        """The permit was not used (its caller gave up before sending)."""
        sent = self._in_flight.pop(seq, None)
        if sent is None:
            return
        if seq == self._probe:
            self._probe = 0
        self._remove_newest(sent)

    def answer(self, seq: int, now: float, info: ResponseInfo | None) -> None:
        """Learn from how request *seq* ended (None: no answer arrived)."""
        sent = self._in_flight.pop(seq, now)
        probe = seq == self._probe
        if probe:
            self._probe = 0
        if info is None:
            return  # it may have been counted: it stays in the log
        self._answered = True
        self._note_latency(now, now - sent)
        if info.window is not None:
            self.window, self.learned = _clamp(info.window, MIN_WINDOW, MAX_WINDOW), True
        if sent >= self._synced_at or info.reset is None:  # a stale answer's reset is stale
            self._reset_at = None if info.reset is None else now + min(info.reset, self.max_pause)
            self._reset_rounded = info.reset_rounded
            self._reset_exact = info.remaining == 0 or info.status == 429
        if info.limit is not None and info.remaining is not None:
            # What the log expected free when the probe went: the units due by then, less
            # what was over the limit.
            expected = self._due(sent) - (self._counted - (self.limit or 0)) if probe else 0
            self._sync(sent, info.limit, info.remaining, now)
            if info.status != 429:
                self._granted += 1
                self._granted_at = now
            if probe and info.status != 429:
                free = int(_clamp(info.remaining, 0, MAX_LIMIT)) + 1  # the probe's own included
                self._judge_probe(sent, now, free, expected)
        if info.status == 429:
            self.rate_limited += 1
            self._on_rate_limited(now, info, probe, sent)
        elif info.status == 503:
            self.pause(now, info.retry_after or self.upstream_pause)

    # -- learning ---------------------------------------------------------------------
    def _sync(self, sent: float, limit: int, remaining: int, now: float) -> None:
        """Match the log to the server's count."""
        limit = int(_clamp(limit, 0, MAX_LIMIT))
        remaining = int(_clamp(remaining, 0, limit))
        if limit != self.limit:
            self._shrunk = self.limit is not None and limit < self.limit
            self.limit = limit
            self._hi, self._lo = None, 0.0
            if limit > 0:
                self._zero_wait = _ZERO_BACKOFF[0]
        used = limit - remaining
        # Only a request sent after the last sync surely reached the server after it, so
        # only its answer may show quota back. Answers that arrived meanwhile may have
        # been counted after it (requests overtake each other on the way): the most in use
        # any of them showed still holds. Requests in flight may or may not be counted yet:
        # they stay in the log. After the limit drops, "0 remaining" may hide more than
        # `limit` in use, so only a positive count frees quota.
        newest = sent >= self._synced_at
        if newest:
            used = max(used, self._used_since)
            self._synced_at, self._used_since = now, 0
            self.remaining = limit - used
            if used >= limit:
                self._drained_at = now
        else:
            self._used_since = max(self._used_since, used)
        if remaining > 0:
            self._shrunk = False
        if self._counted > used + len(self._in_flight) and newest and not self._shrunk:
            self._pop(self._counted - used - len(self._in_flight))
        elif self._counted < used:
            # More in use than we ever sent, even if all ours in flight were counted:
            # another client on the key.
            self._add(now, used - self._counted)

    def _judge_probe(self, sent: float, now: float, free: int, expected: int) -> None:
        """A probe's answer says whether the model's timing was right: the server had
        *free* units where the log expected *expected*."""
        if self.limit == 0:
            self._zero_wait = min(self._zero_wait * 2, _ZERO_BACKOFF[1])
            return
        if self._gradual:
            if free >= _TRICKLE_UNITS:
                self._boost = min(self._boost * 1.03, 2.0)
            return
        # Finding far less back than the log says is quota coming back gradually (a
        # bucket, GCRA, a window counter), unless a trickle already failed here: then the
        # server returns quota in steps, and with a window from whole seconds still under
        # test, finding less back is how a test of a too-short window fails.
        testing = self._stepped and not self._exact
        if expected >= 4 and free * 2 < expected and not testing:
            # Some of what was due is still counted: the server returns quota gradually.
            self._gradual, self._gradual_since = True, self._drained_at
            self._trickle_429s = 0
            self._granted = 1.0  # the probe; the units it found follow as confirmed sends
            self._restamp(now)
            return
        if free >= expected:
            # All it waited for was back: the window is at most that long.
            self._narrow(hi=sent - self._pivot)

    def _rate(self, now: float) -> float:
        """Units per second the server granted since the gradual mode began (at first,
        what the window implies)."""
        span = self._granted_at - self._gradual_since
        if self._granted < 3 or span <= 0:
            return (self.limit or 1) / self.window
        return self._boost * self._granted / span

    def _restamp(self, now: float) -> None:
        """What is still counted is expected back no sooner than a window from now."""
        held = self._counted
        self._log.clear()
        self._counted = 0
        self._add(now, held)

    def _narrow(self, *, lo: float | None = None, hi: float | None = None) -> None:
        """Tighten the bracket around the window and pick the window to use next: the
        top once the bracket is tight, else its middle (a test that costs at most one
        429, which then raises the bottom)."""
        if self._exact:
            return
        if lo is not None:
            self._lo = max(self._lo, lo)
        if hi is not None and hi > 0:
            self._hi = hi if self._hi is None else min(self._hi, hi)
            self.learned = True
        if self._hi is not None and self._lo >= self._hi:
            self._hi = None  # the server changed (or a noisy sample): trust the newest
        if self._hi is None:
            self.window = max(self.window, self._lo * 1.5)  # nothing seen back yet: grow
            return
        tight = self._hi <= self._lo * _CLOSE
        self.window = self._hi if tight else (self._lo + self._hi) / 2

    def _on_rate_limited(self, now: float, info: ResponseInfo, probe: bool, sent: float) -> None:
        wait = info.retry_after
        if info.remaining:
            # Quota left, yet 429: not our quota speaking (an upstream or proxy limit).
            # Wait as asked, but learn nothing about the window from it.
            self.pause(now, wait or self.upstream_pause)
            return
        if self._gradual:
            rate = self._rate(now)
            least = None if wait is None else wait - (1.0 if info.retry_after_rounded else 0.0)
            # A wait of many units' refill time means quota comes back in steps after all;
            # judged only once the rate was measured over enough units.
            if self._granted >= 10:  # counted once the rate was measured
                self._trickle_429s += 1
            # Many 429s for what was granted: a step server whose window was under test.
            stepped = (
                self._trickle_429s >= _STEP_429S
                and self._granted < _STEP_GRANTS * self._trickle_429s
            )
            if not stepped and (least is None or least * rate < 8 or self._granted < 10):
                self._boost = max(self._boost * 0.85, 0.5)  # it refills slower than we asked
                self._drained_at = now
                exact = wait is not None and not info.retry_after_rounded
                self.pause(now, wait if exact and wait is not None else 1 / rate)
                return
            self._gradual = False  # a long wait for one unit: quota comes back in steps
            self._stepped = self._stepped or stepped
        pivot = self._pivot if probe else (self._log[0][0] if self._log else now)
        if probe:
            self._narrow(lo=sent - pivot)  # the unit it waited for was not back yet
        if wait is not None and not info.retry_after_rounded:
            # The server says exactly when a unit is back: the window, seen from the
            # oldest unit (for a fixed window the phase varies, so keep the longest).
            back = now + wait - pivot
            self.window = _clamp(
                max(back, self.window if self._exact else 0.0), MIN_WINDOW, MAX_WINDOW
            )
            self._exact = self.learned = True
        elif wait is not None:
            # Whole seconds: the unit is back somewhere in (wait - 1, wait].
            early = max(0.0, wait - 1.0)
            known = self._hi is not None  # a probe once found the quota back in time
            self._narrow(lo=now + early - pivot, hi=now + wait - pivot)
            self.learned = True
            if known:  # then our own bracket may beat the rounded wait
                wait = max(early, pivot + self.window - now)
        elif self._grown_for < self.paused_until or now >= self.paused_until:
            # No hint: the window was too short. Grow it once per pause (a burst of 429s
            # from requests in flight is one lesson, not many), never past the cap.
            self._lo = max(self._lo, self.window)
            self.window = min(self.window * 2, MAX_WINDOW)
            wait = self.window
        self.pause(now, wait if wait is not None else self.window)
        self._grown_for = self.paused_until

    def pause(self, now: float, seconds: float) -> None:
        """Hold every request for *seconds* (capped at ``max_pause``)."""
        until = now + min(max(seconds, 0.0), self.max_pause)
        self.paused_until = max(self.paused_until, until)

    # -- the log ----------------------------------------------------------------------
    def _add(self, stamp: float, units: int) -> None:
        if self._log and self._log[-1][0] == stamp:
            self._log[-1][1] += units
        else:
            self._log.append([stamp, float(units)])
        self._counted += units

    def _pop(self, units: int) -> None:
        """The *units* oldest are no longer counted by the server."""
        self._counted -= units
        while units > 0 and self._log:
            head = self._log[0]
            if head[1] <= units:
                units -= int(head[1])
                self._log.popleft()
            else:
                head[1] -= units
                units = 0

    def _remove_newest(self, stamp: float) -> None:
        for entry in reversed(self._log):
            if entry[0] == stamp:
                entry[1] -= 1
                self._counted -= 1
                if entry[1] <= 0:
                    self._log.remove(entry)
                return

    def _due(self, at: float) -> int:
        """Units the log says are free again by *at*."""
        horizon = at - self.window
        return int(sum(units for stamp, units in self._log if stamp <= horizon))

    def _note_latency(self, now: float, seconds: float) -> None:
        latencies = self._latencies
        while latencies and latencies[-1][1] <= seconds:
            latencies.pop()  # a slower answer came later: the faster one never matters
        latencies.append((now, seconds))

    def _slowest(self, now: float) -> float:
        """The slowest answer of the last two windows: the delay to allow on top of the
        window, since the server counts a request from when it arrived."""
        latencies = self._latencies
        horizon = now - 2 * self.window
        while latencies and latencies[0][0] < horizon:
            latencies.popleft()
        return min(latencies[0][1], self.window) if latencies else 0.0
