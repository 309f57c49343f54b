"""Where a lookup's CPU goes: a cProfile of one run, its own time grouped by location.

Every profiled function's own time (``tottime``) goes to one group, by the file it lives
in. A built-in (C) function has no file: one named after orjson, asyncio's C parts,
``select`` or aiohttp's C parts goes to that group, any other (``len``, ``dict.get``,
a socket's ``send``) to the group of the Python function that called it, split by how
much of its time each caller accounts for. A group's share of the profiled total, times
the CPU per lookup measured without the profiler in the same run, estimates its µs per
lookup (the profiler inflates absolute times, and inflates many small Python calls more
than a few long C ones, so the shares are estimates).
"""

from __future__ import annotations

import cProfile
import pstats
import re
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["GROUPS", "Breakdown", "profile"]

_ROOT = Path(__file__).resolve().parent.parent.as_posix() + "/"
Func = tuple[str, int, str]  # (filename, line, function name), as pstats keys them

GROUPS = (
    "aiohttp",
    "event loop",
    "parse",
    "structure",
    "limiter",
    "budget",
    "bulk engine",
    "pipeline+transport",
    "other",
)
GROUP_NOTES = {
    "aiohttp": "aiohttp, yarl, multidict, propcache, aiohappyeyeballs",
    "event loop": "asyncio (+ selectors, socket calls)",
    "parse": "orjson",
    "structure": "cattrs + attrs generated code, converter.py, _models.py",
    "limiter": "quota.py, ratelimit.py, headers.py",
    "budget": "budget.py",
    "bulk engine": "bulk.py, source.py, flights.py, lookups.py, _results.py",
    "pipeline+transport": "pipeline.py, transport.py, fate.py, endpoints.py, inputs.py",
    "other": "everything else",
}
_PACKAGES = {
    "aiohttp": ("aiohttp", "yarl", "multidict", "propcache", "aiohappyeyeballs", "frozenlist"),
    "event loop": ("asyncio",),
    "parse": ("orjson",),
    "structure": ("cattrs", "cattr", "attr", "attrs"),
}
_CORE_FILES = {
    "structure": ("_core/converter.py", "dumpling_async/_models.py"),
    "limiter": ("_core/quota.py", "_core/ratelimit.py", "_core/headers.py"),
    "budget": ("_core/budget.py",),
    "bulk engine": (
        "_core/bulk.py",
        "_core/source.py",
        "_core/flights.py",
        "_core/lookups.py",
        "dumpling_async/_results.py",
    ),
    "pipeline+transport": (
        "_core/pipeline.py",
        "_core/transport.py",
        "_core/aiohttp_transport.py",
        "_core/fate.py",
        "_core/endpoints.py",
        "_core/inputs.py",
    ),
}
# Built-ins whose name says where they belong (else they go to their callers' groups).
_BUILTIN_NAMES = {
    "parse": ("orjson",),
    "event loop": ("_asyncio.", "select.", "selectors"),
    "aiohttp": ("aiohttp", "yarl", "multidict", "propcache"),
}


def group_of_file(filename: str) -> str | None:
    """The group of a Python function's file (None for a built-in)."""
    if filename == "~":
        return None
    path = filename.replace("\\", "/")
    if "attrs generated" in path or "dumpling_async generated" in path:
        return "structure"
    for group, endings in _CORE_FILES.items():
        if path.endswith(endings):
            return group
    for group, packages in _PACKAGES.items():
        if any(f"/{package}/" in path for package in packages):
            return group
    if path.endswith(("/selectors.py", "/socket.py")):
        return "event loop"
    return "other"


def group_of_builtin(name: str) -> str | None:
    """The group a built-in's name gives away, if any."""
    for group, markers in _BUILTIN_NAMES.items():
        if any(marker in name for marker in markers):
            return group
    return None


@dataclass(frozen=True)
class Breakdown:
    """Own time per group (seconds under the profiler), and the biggest "other" files."""

    seconds: dict[str, float]
    other_files: list[tuple[str, float]]
    requests: int

    @property
    def total(self) -> float:
        return sum(self.seconds.values())

    def share(self, group: str) -> float:
        return self.seconds.get(group, 0.0) / self.total if self.total else 0.0


def breakdown(stats: pstats.Stats, requests: int) -> Breakdown:
    """Group every function's own time (see the module docstring)."""
    raw = stats.stats  # type: ignore[attr-defined]  # {func: (cc, nc, tt, ct, callers)}
    seconds: defaultdict[str, float] = defaultdict(float)
    other: defaultdict[str, float] = defaultdict(float)

    def add(group: str, func: Func, tt: float) -> None:
        seconds[group] += tt
        if group == "other":
            other[_short(func[0]) if func[0] != "~" else func[2]] += tt

    for func, (_cc, _nc, tt, _ct, callers) in raw.items():
        filename, _line, name = func
        group = group_of_file(filename) or group_of_builtin(name)
        if group is not None:
            add(group, func, tt)
            continue
        # A built-in with no group of its own: split among its callers' groups.
        caller_tts = {caller: edge[2] for caller, edge in callers.items()}
        caller_total = sum(caller_tts.values())
        if not caller_tts or caller_total <= 0:
            add("other", func, tt)
            continue
        for caller, caller_tt in caller_tts.items():
            caller_group = group_of_file(caller[0]) or group_of_builtin(caller[2]) or "other"
            add(caller_group, caller, tt * caller_tt / caller_total)
    largest = sorted(other.items(), key=lambda item: item[1], reverse=True)[:6]
    return Breakdown(dict(seconds), largest, requests)


def _short(filename: str) -> str:
    """A file's name relative to site-packages, the standard library or this checkout."""
    path = filename.replace("\\", "/")
    if "/site-packages/" in path:
        return path.split("/site-packages/", 1)[1]
    if path.startswith(_ROOT):
        return path.removeprefix(_ROOT)
    return re.sub(r"^.*/lib/python3\.\d+/", "", path)


def profile(run: Callable[[], object], requests: int) -> tuple[Breakdown, pstats.Stats]:
    """Run *run()* under cProfile; its breakdown and the raw stats."""
    profiler = cProfile.Profile(time.thread_time)
    profiler.enable()
    try:
        run()
    finally:
        profiler.disable()
    stats = pstats.Stats(profiler)
    return breakdown(stats, requests), stats
