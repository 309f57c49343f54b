"""The quota model as plain data, for a model shared through Redis: a versioned schema.

``dump(model)`` gives a JSON-ready dict, ``load(data, ...)`` a model again. The schema
is an attrs class, not the model's ``vars()``: renaming a field of the model does not
silently change what other workers read. A state of another ``VERSION`` (a worker of
another release) or one that does not match the schema raises ``StateError``: the caller
starts afresh, which is safe, since every answer re-syncs a new model.
"""

from __future__ import annotations

from typing import Any

import attrs
import cattrs

from .answer import Cap, Lag
from .probes import Probes
from .quota import Mode, QuotaModel

__all__ = ["VERSION", "QuotaState", "StateError", "dump", "load"]

VERSION = 4  # 1: the vars() of the model of 0.x; 2: no lag; 3: a 429's time in fastest


class StateError(ValueError):
    """The shared state is of another version, or broken."""


@attrs.frozen(kw_only=True)
class QuotaState:
    """Every field of ``QuotaModel`` that a worker needs to go on from another's."""

    version: int
    mode: str
    limit: int | None
    remaining: int | None
    rate_limited: int
    paused_until: float
    ledger: list[list[float]]
    in_flight: list[list[float]]
    seq: int
    window_guess: float
    guessed: bool
    window_lo: float
    window_hi: float | None
    refill: list[list[float]]
    pace: float
    slowed: float
    synced: float
    drained: float | None
    cap: list[float] | None  # [upto, at, most, from_reset]
    reset_trusted: bool
    retry_after_floors: bool
    probe_at: float
    probe_gap: float
    risky: int
    fastest: float
    lag: list[float]  # [value, at, floor, floor_at]
    partial: list[float] | None
    trial: int
    trial_window: float
    trial_expect: int


_converter = cattrs.Converter(forbid_extra_keys=True)


def dump(model: QuotaModel) -> dict[str, Any]:
    """The model as plain data."""
    cap = model.word.cap
    state = QuotaState(
        version=VERSION,
        mode=model.mode.value,
        limit=model.limit,
        remaining=model.remaining,
        rate_limited=model.rate_limited,
        paused_until=model.paused_until,
        ledger=model.ledger.entries(),
        in_flight=[[float(seq), sent] for seq, sent in model.ledger.in_flight.items()],
        seq=model.ledger.seq,
        window_guess=model.steps.guess,
        guessed=model.guessed,
        window_lo=model.steps.lo,
        window_hi=model.steps.hi,
        refill=model.refill.state(),
        pace=model.pace,
        slowed=model.slowed,
        synced=model.synced,
        drained=model.drained,
        cap=None if cap is None else [cap.upto, cap.at, float(cap.most), float(cap.from_reset)],
        reset_trusted=model.word.reset_trusted,
        retry_after_floors=model.word.floors,
        probe_at=model.probes.at,
        probe_gap=model.probes.gap,
        risky=model.probes.risky,
        fastest=model.fastest,
        lag=[model.lag.value, model.lag.at, model.lag.floor, model.lag.floor_at],
        partial=None if model.partial is None else list(model.partial),
        trial=model.probes.trial,
        trial_window=model.probes.trial_window,
        trial_expect=model.probes.trial_expect,
    )
    return attrs.asdict(state)


def load(data: object, *, upstream_pause: float, max_pause: float) -> QuotaModel:
    """A model from ``dump()``'s data; ``StateError`` if it is of another version or
    does not match the schema."""
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise StateError("shared quota state of another version")
    try:
        state = _converter.structure(data, QuotaState)
        mode = Mode(state.mode)
    except (cattrs.BaseValidationError, ValueError, TypeError, KeyError) as exc:
        raise StateError(f"shared quota state does not match the schema: {exc}") from exc
    model = QuotaModel(
        window=state.window_guess, upstream_pause=upstream_pause, max_pause=max_pause
    )
    model.guessed = state.guessed
    model.mode = mode
    model.limit, model.remaining = state.limit, state.remaining
    model.rate_limited, model.paused_until = state.rate_limited, state.paused_until
    model.ledger.restore(state.ledger, state.in_flight)
    model.ledger.seq = state.seq
    model.steps.lo, model.steps.hi = state.window_lo, state.window_hi
    model.refill.restore(state.refill)
    model.refill.span = model.tuning.rate_quotas * (state.limit or 1)
    model.pace, model.slowed = state.pace, state.slowed
    model.synced, model.drained = state.synced, state.drained
    if state.cap is not None and len(state.cap) == 4:
        upto, at, most, from_reset = state.cap
        model.word.cap = Cap(upto=upto, at=at, most=int(most), from_reset=bool(from_reset))
    model.word.reset_trusted = state.reset_trusted
    model.word.floors = state.retry_after_floors
    model.probes = Probes(
        at=state.probe_at,
        gap=state.probe_gap,
        risky=state.risky,
        trial=state.trial,
        trial_window=state.trial_window,
        trial_expect=state.trial_expect,
        reconfirm=model.tuning.reconfirm,
    )
    model.fastest = state.fastest
    if len(state.lag) == 4:
        most = model.tuning.lag_most
        value, at, floor, floor_at = state.lag
        model.lag = Lag(min(max(value, 0.0), most), at, min(max(floor, 0.0), most), floor_at)
    if state.partial is not None and len(state.partial) == 2:
        model.partial = (state.partial[0], state.partial[1])
    return model
