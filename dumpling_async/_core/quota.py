"""The server's quota as the client believes it: a pure model, learned from every answer.

Answers are late: a request is counted when it reaches the server, its answer may take
seconds, and the Remaining in it describes the moment it was counted. So the model
reasons in *send times*: a unit of quota is used when its request is sent (``Ledger``),
and each answer is a measurement of the past, reconciled at its request's send time.

What may go is decided by the state the model is in (``Mode``: what it knows of the
server), and every change of state is made in ``QuotaModel._advance``. The estimates
behind the states are the step window and the refill rate (``window``); what the server
said of when units come back, as intervals when whole seconds, is its ``Word``; the
tuning numbers are ``Tuning``. Every header value is untrusted (the limit capped,
Remaining clamped to ``[0, limit]``). The model takes the time as an argument and does
no I/O: the in-process limiter, the Redis one and the simulated tests run this code.
"""

from __future__ import annotations

import math

from .answer import Cap, Lag, ResponseInfo, Word
from .ledger import Ledger, Reconciled
from .modes import Mode
from .probes import Probes
from .tuning import Tuning
from .window import RefillRate, StepWindow, seen_in_part

__all__ = ["MAX_LIMIT", "Cap", "Mode", "QuotaModel", "ResponseInfo", "Tuning"]

MAX_LIMIT = 1_000_000  # no real plan is larger; a bigger header is capped to this
DEFAULT_TUNING = Tuning()
_NEVER = -1e18  # a time before any (finite, so that the state is plain JSON)
_STEPPED = (Mode.CONFIRMING, Mode.STEPS)
_EPSILON = 1e-9  # a unit due at t is back at t (float sums need not round alike)
_GUESS = 0.25  # the window to start from when none was given (seconds)


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


class QuotaModel:
    """The model of one API key's quota; see the module docstring. Times are seconds on
    any monotonic clock, passed in by the caller."""

    def __init__(
        self,
        *,
        window: float | None = None,
        upstream_pause: float = 0.5,
        max_pause: float = 60.0,
        tuning: Tuning = DEFAULT_TUNING,
    ) -> None:
        self.tuning = tuning
        self.upstream_pause = upstream_pause
        self.max_pause = max_pause
        low, high = tuning.window_range
        self.mode = Mode.STARTING
        self.limit: int | None = None
        self.remaining: int | None = None
        self.rate_limited = 0
        self.paused_until = 0.0
        self.ledger = Ledger()
        # A window given is a guess, tried first; without one, learned (0.25 s to start).
        self.guessed = window is not None
        guess = _GUESS if window is None else window
        self.steps = StepWindow(_clamp(guess, low, high), tight=tuning.tight)
        self.refill = RefillRate(span=tuning.rate_quotas)
        self.pace = 1.0  # share of the measured rate a gradual server took without 429s
        self.slowed = _NEVER  # when the pace was last slowed (send time)
        self.synced = _NEVER  # send time of the freshest answer reconciled
        self.drained: float | None = None  # when the quota was last used up (send time)
        self.word = Word()  # what the server said of when units come back
        self.probes = Probes(gap=self.steps.guess, reconfirm=tuning.reconfirm)
        self.fastest = -_NEVER  # the fastest lookup answered: the delay to the server is less
        self.lag = Lag()  # how late our own sends leave (a busy loop)
        self.partial: tuple[float, float] | None = None  # (group stamp, first seen back in part)

    # -- what the model reports ---------------------------------------------------------
    @property
    def in_flight(self) -> int:
        return len(self.ledger.in_flight)

    @property
    def jitter(self) -> float:
        """How far apart two requests sent together may be counted: the network's, and
        this client's own lag."""
        return self.tuning.jitter + self.lag.value

    @property
    def window(self) -> float:
        """The window the model sends on (seconds)."""
        return self.steps.value

    @property
    def learned(self) -> bool:
        """The window or the refill rate came from the server, not from the guess."""
        return self.mode is Mode.GRADUAL or (self.mode in _STEPPED and self.steps.known)

    def refill_rate(self) -> float | None:
        """Units per second the server returns, as learned (None before any limit)."""
        if not self.limit:
            return None
        if self.mode is Mode.GRADUAL:
            rate = self.refill.value
            return None if rate is None else rate * self.pace
        return self.limit / self.window

    # -- what may go now ----------------------------------------------------------------
    def wait(self, now: float, n: int = 1) -> float:
        """0 when a request may go now, else how long until the model says one may
        (``math.inf``: until an answer arrives); with *n*, until *n* may have gone."""
        if now < self.paused_until and n == 1:
            return self.paused_until - now
        mode = self.mode
        if mode is Mode.UNMETERED:
            return max(0.0, self.paused_until - now)
        if mode in (Mode.STARTING, Mode.CLOSED) and (self.ledger.in_flight or n > 1):
            return math.inf  # one at a time, each after the last one's answer
        if mode is Mode.STARTING:
            return 0.0
        if mode is Mode.CLOSED:
            return max(0.0, self.probes.at - now)
        assert self.limit is not None
        free = self.limit - self.ledger.counted + self._back(now)
        keep = self._reserve()
        if free - n + 1 > keep:
            return max(0.0, self.paused_until - now)
        # When the model expects enough back to go beyond the reserve; a probe may take
        # the reserve at its time. With nothing in hand while learning, a probe that
        # risks a 429 (one at a time: its answer says what a second one would).
        # (A probe or a trial lets one go, not n.)
        at = self._back_at(self.ledger.counted - self.limit + n + keep, now)
        if n == 1 and free >= 1:
            at = min(at, self.probes.at)
        elif n == 1 and mode is Mode.LEARNING:  # after the probe out is answered or overdue
            at = min(at, max(self.probes.at, self._free_at(self.probes.risky, now)))
        elif n == 1 and mode is Mode.CONFIRMING and self.probes.trial:  # one overdue frees
            at = min(at, self._free_at(self.probes.trial, now) + _EPSILON)
        return max(0.0, at - now, self.paused_until - now)

    def _free_at(self, seq: int, now: float) -> float:
        overdue = self.tuning.overdue * min(self.fastest, 1e6)
        return self.probes.free_at(seq, self.ledger.in_flight.get(seq), now, overdue)

    def _out(self, seq: int, now: float) -> bool:
        return now < self._free_at(seq, now)

    def spare(self) -> float:
        """How many requests may go at once when ``wait()`` says one may: more than one
        only on quota in hand (``math.inf``: no limit to keep)."""
        if self.mode is Mode.UNMETERED:
            return math.inf
        if self.limit is None or self.mode is Mode.CLOSED:
            return 1.0
        return max(1.0, float(self.limit - self.ledger.counted - self._reserve()))

    def _reserve(self) -> int:
        """Units kept back to test the window while its bracket is wide: one of each
        window's burst goes at the bracket's middle instead (it cannot be refused). Not on
        a fixed window, where a test across an edge reads as a short window."""
        if self.mode is not Mode.STEPS or self.steps.test_lag is None or not self.limit:
            return 0
        # A test may be tried by a burst first (CONFIRMING): worth it only when answers come
        # back well within a window.
        fast = self.fastest * self.tuning.test_latency < self.steps.value
        return 1 if fast and self.limit > 1 else 0

    def _back(self, now: float) -> int:
        """Units the model expects back by *now* that no answer has shown yet."""
        ledger = self.ledger
        back = self._capped(now)
        horizon = now - self.window - self.jitter + _EPSILON
        if self.mode is Mode.STEPS:
            back = max(back, ledger.count_upto(horizon))
        elif self.mode is Mode.CONFIRMING and not self._out(self.probes.trial, now):
            # One unit on the window's prediction, the trial; the rest wait for its answer.
            due = ledger.count_upto(horizon)
            trial = max(ledger.counted - (self.limit or 0) + 1, 0)  # what makes one unit free
            back = max(back, min(due, trial))
        elif self.mode is Mode.GRADUAL:
            rate = self._pace()
            if rate and now > self.synced:
                back = max(back, min(ledger.counted, int((now - self.synced) * rate)))
        return back

    def _capped(self, now: float) -> int:
        """Units a server's own word (a reset, a Retry-After) says are back by *now*."""
        cap = self.word.cap
        if cap is None or now + _EPSILON < cap.at:
            return 0
        units = self.ledger.count_upto(cap.upto)
        return min(units, cap.most)

    def _back_at(self, units: int, now: float) -> float:
        """When the model expects *units* back (``math.inf``: it does not know)."""
        ledger = self.ledger
        if units > ledger.counted:
            return math.inf
        at = math.inf
        cap = self.word.cap
        if cap is not None:
            said = ledger.count_upto(cap.upto)
            if min(said, cap.most) >= units:
                at = cap.at
        trial = self.mode is Mode.CONFIRMING and not self._out(self.probes.trial, now)
        stamp = ledger.nth_stamp(units)
        if stamp is not None and (
            self.mode is Mode.STEPS or (trial and units <= ledger.counted - (self.limit or 0) + 1)
        ):
            at = min(at, stamp + self.window + self.jitter)
        elif self.mode is Mode.GRADUAL:
            rate = self._pace()
            if rate:
                at = min(at, max(self.synced, now) + 1e-6 + units / rate)
                if self.synced < now:
                    at = min(at, self.synced + units / rate + 1e-6)
        return at

    def _pace(self) -> float | None:
        rate = self.refill.value
        return None if rate is None else rate * self.pace * self.tuning.gradual_share

    # -- the permit's life --------------------------------------------------------------
    def grant(self, now: float) -> int:
        """Record a request sent now; its permit number."""
        mode = self.mode
        if mode is Mode.UNMETERED:
            return self.ledger.track(now)  # not modelled: a permit, no unit
        if self.limit is None or mode is Mode.CLOSED:
            return self.ledger.grant(now)
        free = self.limit - self.ledger.counted + self._back(now)
        keep = self._reserve()
        in_hand = self.limit - self.ledger.counted + self._capped(now)
        if in_hand < 1 and mode is Mode.CONFIRMING:
            # A send on the window's prediction tests the window only if it goes about
            # when the unit it counts on was due; one long overdue would come back anyway.
            stamp = self.ledger.nth_stamp(self.ledger.counted - self.limit + 1)
            due = (stamp if stamp is not None else now) + self.steps.value
            slack = self.tuning.trial_slack * self.steps.value + 2 * self.jitter
            timely = now - due <= slack
            self.probes.trial_window = self.steps.value if timely else -_NEVER
        seq = self.ledger.grant(now)
        if in_hand < 1 and mode is Mode.LEARNING:
            self.probes.risky = seq  # a probe that may be refused
        elif in_hand < 1 and mode is Mode.CONFIRMING:
            self.probes.trial = seq  # the send on the window's prediction: its answer decides
            # Units the window says are back for it (more than the one it may take).
            horizon = now - self.window - self.jitter + _EPSILON
            back = self.ledger.count_upto(horizon)
            self.probes.trial_expect = self.limit - self.ledger.counted + 1 + back
        if free - 1 <= keep and self.drained is None:
            self.drained = now  # the quota in hand is used up: probes from now on
            self._schedule_probe(now)
        elif free <= keep:  # a probe: the next waits its turn
            self._schedule_probe(now)
        return seq

    def _schedule_probe(self, now: float) -> None:
        if self.mode is Mode.LEARNING:
            self.probes.next(now, self.tuning.probe_growth)
            if self.partial is not None:  # two jitters late: the jitter may grow by then
                proof = (self.tuning.gradual_proof + 2) * self.jitter
                self.probes.look_again(self.partial[1] + proof, now)
        elif self.mode is Mode.STEPS:
            lag = self.steps.test_lag
            base = self.drained if self.drained is not None else now
            self.probes.at = max(now, base + lag) if lag is not None else now

    def left(self, seq: int, now: float) -> None:
        """Request *seq* left now, later than its permit (a connection being opened, a
        busy loop): it is stamped now, so the answer of a request granted after it but
        sent before it is not read as showing its unit back."""
        self.ledger.depart(seq, now, unit=self.mode is not Mode.UNMETERED)

    def cancel(self, seq: int) -> None:
        """The permit was not used (its caller gave up before sending)."""
        sent = self.ledger.settle(seq)
        self.probes.ended(seq)
        if sent is not None and self.mode is not Mode.UNMETERED:
            self.ledger.remove(sent)

    def expire(self, now: float, stale_after: float) -> None:
        """Forget requests in flight for longer than *stale_after* (their worker is gone;
        what they used stays counted until an answer shows it back)."""
        for seq in self.ledger.expire(now, stale_after):
            self.probes.ended(seq)

    def answer(self, seq: int, now: float, info: ResponseInfo | None) -> None:
        """Learn from how request *seq* ended (None: no answer arrived)."""
        sent = self.ledger.settle(seq)
        trial = self.probes.ended(seq)
        if sent is None:
            sent = now  # forgotten as stale: it was counted by now at the latest
        if info is None:
            return  # it may have been counted: its unit stays until an answer shows it back
        if info.status != 429:  # a refusal comes back at once, before any lookup's work
            self.fastest = min(self.fastest, max(now - sent, 0.0))
        if info.sent_late:
            self.lag.observe(info.sent_late, now, self.tuning)
        if info.window is not None:
            low, high = self.tuning.window_range
            window = _clamp(info.window, low, high)
            self.steps.exactly(window, self.jitter)
        if info.limit is None or info.remaining is None:
            self._advance(Mode.UNMETERED if info.status != 429 else self.mode)
            if info.status == 429:
                self.rate_limited += 1
                self.pause(now, info.retry_after or self.steps.value)
            elif info.status == 503:
                self.pause(now, info.retry_after or self.upstream_pause)
            return
        limit = int(_clamp(info.limit, 0, MAX_LIMIT))
        remaining = int(_clamp(info.remaining, 0, limit))
        if limit == 0:
            probes = self.probes
            if self.mode is Mode.CLOSED:  # still closed: probe less often
                probes.gap = min(probes.gap * 2, self.tuning.closed_backoff[1])
            self.limit, self.remaining = 0, 0
            self._advance(Mode.CLOSED)
            probes.at = now + probes.gap
            return
        if self.limit is not None and limit != self.limit:
            # What a new limit changes: a gradual server's rate scales with it, and what
            # the server said of the old one no longer holds; the window is the server's.
            if self.mode is Mode.GRADUAL:
                self.refill.scale(limit / self.limit)
            self.word.cap = None
        self.limit = limit
        if self.mode in (Mode.STARTING, Mode.UNMETERED, Mode.CLOSED):
            if self.guessed and not self.steps.known:
                self.steps.hi = self.steps.guess  # the window given: tried by a trial first
                self._advance(Mode.CONFIRMING)
            else:
                self._advance(Mode.LEARNING)
        refused = info.status == 429
        if refused:
            self.ledger.remove(sent)  # a refused request is not counted
        jitter = self.jitter
        fresh = sent >= self.synced - jitter
        found = self.ledger.reconcile(
            sent, limit - remaining, counted_itself=not refused, jitter=jitter, fresh=fresh
        )
        if fresh:
            cap = self.word.cap
            if cap is not None and sent + jitter >= cap.at:
                self.word.cap = None  # sent after what the server said: the answer tells the rest
            self.synced = max(self.synced, sent)
            self.remaining = remaining
            if remaining > 0:
                self.drained = None
                if self.mode is Mode.GRADUAL and not refused and sent >= self.slowed:
                    self.pace = min(self.pace * self.tuning.speed_up, 1.0)
        self._learn(sent, found)
        if trial and not refused and self.mode is Mode.CONFIRMING:
            group = min(self.tuning.partial_group, limit)
            if self.probes.holds(group=group, remaining=remaining, steps=self.steps):
                self._advance(Mode.STEPS)  # the window held (a 429 taught it: try again)
        if fresh and self.word.reset_trusted and info.reset is not None:
            self._note_reset(sent, now, info, remaining)
        if refused:
            self.rate_limited += 1
            # The oldest unit the 429 shows counted; when the requests sent with it explain
            # the count alone, the oldest held (the burst itself, as before).
            held = found.proven if found.proven is not None else self.ledger.oldest()
            self._refused(sent, now, info, remaining, held)
        elif info.status == 503:
            self.pause(now, info.retry_after or self.upstream_pause)

    # -- learning -----------------------------------------------------------------------
    def _learn(self, sent: float, found: Reconciled) -> None:
        """What an answer's reconciliation says of when units come back."""
        jitter = self.jitter
        steps = self.steps
        if found.held is not None:
            steps.still_counted(sent - found.held - jitter)
        if not found.popped or found.popped_newest is None:
            return
        if self.mode is Mode.GRADUAL:
            self.refill.add(sent, found.popped)
            return
        newest = found.popped_newest
        if found.split_group >= 1 and found.popped + found.split_group >= self.tuning.partial_group:
            # Part of a group sent together is back, part still counted: a gradual server,
            # once a later look proves it (``seen_in_part``).
            first = self.partial
            proof = self.tuning.gradual_proof * jitter
            gradual, self.partial = seen_in_part(
                first, (newest, sent), jitter, proof, learning=self.mode is Mode.LEARNING
            )
            if gradual and first is not None:
                since = self.drained if self.drained is not None else newest
                self.refill.span = self.tuning.rate_quotas * (self.limit or 1)
                self.refill.start(min(since, first[1]), sent, found.popped)
                self._advance(Mode.GRADUAL)
            return
        before = steps.value
        steps.back_within(sent - newest + jitter)
        self._window_changed(before)
        if self.probes.trial and self.probes.untried(steps):
            self.probes.trial = 0  # a shorter window since it went: a new trial tries it
        if self.mode is Mode.LEARNING and steps.known:
            self._advance(Mode.CONFIRMING)

    def _window_changed(self, before: float) -> None:
        """A window shorter than the one sent on, and untried (``Probes.untried``), is tried
        by one burst first (a fixed window's phase can pass for a short window: one 429)."""
        shorter = self.steps.value < before - _EPSILON
        if shorter and self.mode is Mode.STEPS and self.probes.untried(self.steps):
            self._advance(Mode.CONFIRMING)

    def _note_reset(self, sent: float, now: float, info: ResponseInfo, remaining: int) -> None:
        """A reset header: with nothing left, when the next unit is back; with some
        left, when all used is back. Whole seconds are taken at their late end."""
        assert info.reset is not None
        # A request sent then may still reach the server a jitter before it.
        at = (now if info.reset_absolute else sent) + min(info.reset, self.max_pause)
        at += self.jitter
        if self.mode is Mode.GRADUAL:
            return  # a pace is better than a reset (a window counter's over-promises)
        assert self.limit is not None
        # Nothing left: the next unit is back then; else all in use when this was counted.
        most = 1 if remaining == 0 or info.status == 429 else self.limit - remaining
        self.word.keep(Cap(upto=sent, at=at, most=most, from_reset=True))

    def _refused(
        self, sent: float, now: float, info: ResponseInfo, remaining: int, held: float | None
    ) -> None:
        """A 429: the quota was used up when *sent* was counted (or, with quota left,
        something else refused it: wait as asked, learn nothing of the quota). *held*: the
        oldest unit the 429 shows still counted (the ledger may hold older ones that only
        requests in flight could show back)."""
        if remaining > 0:
            self.pause(now, info.retry_after or self.upstream_pause)
            return
        wait, word = info.retry_after, self.word
        word.refused(sent, wait, info.retry_after_rounded)
        jitter = self.jitter
        if self.mode is Mode.GRADUAL:
            rate = self._pace() or 1.0
            if wait is not None and wait * rate >= self.tuning.step_wait:
                # A wait of many units' refill time: quota comes back in steps after all
                # (a fixed window read as gradual); one burst tries the window first.
                self.steps.still_counted(sent - (held or sent) - jitter)
                self._advance(Mode.CONFIRMING)
            elif sent >= self.slowed:  # one slow-down per round of requests
                self.pace = max(self.pace * self.tuning.slow_down, self.tuning.pace_floor)
                self.slowed = now
            seconds = word.late_end(wait) if wait is not None else 1 / rate
            self.pause(now, max(sent + seconds - now, 0.0))  # the wait counts from sent
            if self.mode is Mode.GRADUAL:  # back when it ends: the one unit waited for
                self.synced = max(self.synced, self.paused_until - 1 / (self._pace() or 1.0))
            return
        steps = self.steps
        if held is not None:
            steps.still_counted(sent - held - jitter)
        if wait is None:
            until = (held if held is not None else sent) + self.window
            self.pause(now, max(until - now, 0.0))
            return
        back = sent + word.late_end(wait) + jitter  # sent then, it may arrive a jitter sooner
        oldest = self.ledger.oldest()
        if held is not None and oldest is not None:
            before = steps.value
            if info.retry_after_rounded:
                steps.still_counted(sent + word.early_end(wait) - held - jitter)
            else:
                # The unit back then is the oldest the server counts: one from the oldest
                # the ledger holds to *held*. Only *held* bounds the window from below.
                steps.exactly(back - jitter - oldest, jitter, least=back - held - 2 * jitter)
            word.keep(Cap(upto=oldest, at=back, most=1, from_reset=False))
            if self.mode is Mode.LEARNING:
                self._advance(Mode.CONFIRMING)
            self._window_changed(before)
        self.pause(now, max(back - now, 0.0))

    def _advance(self, mode: Mode) -> None:
        """Enter *mode*: the one place where the model changes state."""
        if mode is self.mode:
            return
        if mode is Mode.CLOSED:
            self.probes.gap = self.tuning.closed_backoff[0]
        elif mode is Mode.LEARNING:
            self.probes.gap = self.tuning.first_probe
            self.drained = None
        elif mode is Mode.CONFIRMING:
            self.probes.trial = 0
        elif mode is Mode.GRADUAL:
            self.word.cap = None
            self.pace = 1.0
        elif mode is Mode.UNMETERED:
            self.limit = self.remaining = None
            self.ledger.forget_units()
        self.mode = mode

    def pause(self, now: float, seconds: float) -> None:
        """Hold every request for *seconds* (capped at ``max_pause``)."""
        until = now + min(max(seconds, 0.0), self.max_pause)
        self.paused_until = max(self.paused_until, until)
