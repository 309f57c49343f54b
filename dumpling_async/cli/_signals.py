"""SIGINT and SIGTERM in the commands that run an event loop: the bulk and listing runs
stop gracefully (``stop_on_signals``), ``fake-server`` stops serving; both install their
handlers through ``signal_handlers``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterator
from typing import Final, Protocol

from rich.console import Console

__all__ = ["STOP_GRACE", "Interruptible", "signal_handlers", "stop_on_signals"]

STOP_GRACE: Final = 10.0  # seconds the work in flight gets to finish after SIGINT/SIGTERM


class Interruptible(Protocol):
    """A run's stats as far as signals go: which signal stopped it, if any."""

    interrupted: str | None


@contextlib.contextmanager
def signal_handlers(handler: Callable[[str], object]) -> Iterator[None]:
    """Call ``handler(name)`` on SIGINT/SIGTERM (name ``"SIGINT"`` or ``"SIGTERM"``) while
    the block runs, from the running event loop; the handlers are removed on exit."""
    loop = asyncio.get_running_loop()
    installed: list[int] = []
    for signum, name in ((int(signal.SIGINT), "SIGINT"), (int(signal.SIGTERM), "SIGTERM")):
        try:
            loop.add_signal_handler(signum, handler, name)
        except (NotImplementedError, RuntimeError, ValueError):
            continue  # not the main thread, or no signal support (Windows)
        installed.append(signum)
    try:
        yield
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


@contextlib.contextmanager
def stop_on_signals(stats: Interruptible, console: Console, doing: str) -> Iterator[None]:
    """On SIGINT/SIGTERM set ``stats.interrupted`` and let the work in flight (maybe
    already charged) finish for up to STOP_GRACE seconds, then cancel the running task;
    a second signal cancels it at once. *doing* says what is being finished."""
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    timers: list[asyncio.TimerHandle] = []

    def on_signal(name: str) -> None:
        assert task is not None
        if stats.interrupted is not None:
            task.cancel()
            return
        stats.interrupted = name
        console.print(
            f"{name}: {doing} (up to {STOP_GRACE:g}s), then stopping; "
            "send it again to stop at once",
            markup=False,
        )
        timers.append(loop.call_later(STOP_GRACE, task.cancel))

    handlers = signal_handlers(on_signal) if task is not None else contextlib.nullcontext()
    with handlers:
        try:
            yield
        finally:
            for timer in timers:
                timer.cancel()
