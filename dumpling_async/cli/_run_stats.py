"""What every command-line run records, whatever it fetches (``RunStats`` for
``profiles`` and ``demo`` and ``ListingStats`` for the listing commands add their own
counters), and the one rule that turns how a run ended into its exit status.
"""

from __future__ import annotations

import time

import attrs

from .._client import AsyncDumplingClient
from ._support import EXIT_ABORTED, EXIT_FAILED, EXIT_OK, EXIT_SIGINT, EXIT_SIGTERM

__all__ = ["Stats", "exit_status"]


def exit_status(*, interrupted: str | None, aborted: bool, failed: bool) -> int:
    """A signal's status first (the run was stopped, whatever else), then 3 when the
    account stopped it (a 401, or out of credits), 1 when anything failed or is left to
    do, else 0."""
    if interrupted == "SIGTERM":
        return EXIT_SIGTERM
    if interrupted is not None:
        return EXIT_SIGINT
    if aborted:
        return EXIT_ABORTED
    return EXIT_FAILED if failed else EXIT_OK


@attrs.define(slots=True)
class Stats:
    """What a run did, as far as every run goes; read by the progress display, the
    summary and the exit status."""

    written: int = 0  # results or items written this run
    interrupted: str | None = None  # the signal that stopped it
    output: str = "<stdout>"
    client: AsyncDumplingClient | None = None
    started: float = attrs.field(factory=time.monotonic)
    finished: float | None = None

    @property
    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    @property
    def credits(self) -> int:
        return self.client.credits_spent if self.client is not None else 0

    def ending(self) -> tuple[bool, bool]:
        """(aborted by the account, failed or unfinished): each kind of run says."""
        raise NotImplementedError

    def exit_code(self) -> int:
        aborted, failed = self.ending()
        return exit_status(interrupted=self.interrupted, aborted=aborted, failed=failed)
