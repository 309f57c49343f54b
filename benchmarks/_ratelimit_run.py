"""Running ``benchmarks.ratelimit``'s cells: one (scenario, contender, run) each, in a
fresh process of its own with a fresh server process, several at once.

At 20 requests/s the CPU is nearly idle and the wall time is what a matrix costs, so
``run_cells`` runs *jobs* cells in parallel (a ``ProcessPoolExecutor`` with ``spawn`` and
one cell per worker process), the longest first, starting them ``START_GAP`` apart so
that no two start at once. Each cell returns a ``RunRecord``.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field

from ._contenders import CONTENDERS, Job, peer_in_flight
from ._ratelimit_matrix import TARGET_429, TARGET_EFFICIENCY, TARGET_RELATIVE, Scenario
from ._server import ServerProcess, ServerStats

__all__ = ["Cell", "RunRecord", "handle_names", "run_cell", "run_cells"]

_MIN_LEAD = 0.05  # seconds: the least time to wait for a start phase
# Cells start one at a time, this far apart: a cell's start (a process spawned, its
# imports, the server's) takes a core for about a second, and cells starting together
# would steal CPU from the first windows of those already measuring.
START_GAP = 1.0


def handle_names(count: int) -> list[str]:
    return [f"user{i}" for i in range(count)]


@dataclass(frozen=True)
class Cell:
    """One run of one contender on one scenario."""

    scenario: Scenario
    contender: str
    run: int  # 0 .. runs - 1
    runs: int

    @property
    def seed(self) -> int:
        """The server's answer-time seed and the peers' backoff seed."""
        return self.run + 1

    @property
    def period(self) -> float | None:
        """What the start is phased against, in Unix time: the window when windows are
        aligned to it; a second for a whole-second Unix reset (``x-unix``: how its
        rounding falls depends on it); else None."""
        if self.scenario.phased:
            return self.scenario.quota.window
        return 1.0 if self.scenario.reset == "x-unix" else None

    @property
    def phase(self) -> float | None:
        """Where in its *period* (a share of it) the run starts: spread over the runs,
        0.1 to 0.9; None without a period."""
        if self.period is None:
            return None
        return 0.5 if self.runs == 1 else 0.1 + 0.8 * self.run / (self.runs - 1)

    def describe(self) -> str:
        return f"{self.scenario.describe()} / {self.contender} run {self.run + 1}/{self.runs}"


@dataclass
class RunRecord:
    """What one cell measured (or why it failed)."""

    cell: Cell
    elapsed: float = math.nan
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    note: str = ""
    concurrency: int | None = None  # the client's chosen concurrency (most seen)
    in_flight: int | None = None  # the peers' fixed in-flight count
    stats: ServerStats | None = None
    start_phase: float | None = None  # seconds into the cell's period at the job start
    client_cpu: float = 0.0  # the client process's CPU seconds during the job
    cell_seconds: float = 0.0  # the cell's wall time, server start included
    failure: str | None = None  # the cell itself broke (an exception, a timeout)

    @property
    def scenario(self) -> Scenario:
        return self.cell.scenario

    @property
    def mean_answer(self) -> float:
        return self.scenario.latency.mean

    @property
    def ideal(self) -> float:
        return self.scenario.ideal_seconds(self.ok)

    @property
    def perfect(self) -> float:
        phase = self.start_phase if self.scenario.phased else None
        return self.scenario.perfect_seconds(phase or 0.0)

    @property
    def efficiency(self) -> float:
        """(ideal + mean answer time) / elapsed, ideal from the lookups delivered."""
        if self.failure is not None or not self.elapsed > 0:
            return 0.0
        return (self.ideal + self.mean_answer) / self.elapsed

    @property
    def best(self) -> float:
        """A perfect client's efficiency: (ideal + mean) / (perfect + mean)."""
        ideal = self.scenario.ideal_seconds() + self.mean_answer
        perfect = self.perfect + self.mean_answer
        return ideal / perfect if perfect > 0 else math.inf

    @property
    def share_429(self) -> float:
        return self.stats.rate_limited_share if self.stats is not None else 0.0

    @property
    def not_ok(self) -> int:
        return self.scenario.quota.handles - self.ok

    @property
    def rate_limit_lost(self) -> int:
        """Lookups lost to the rate limit (RateLimitError; a peer's last 429)."""
        return sum(n for name, n in self.errors.items() if "RateLimit" in name or "429" in name)

    def target_efficiency(self) -> float:
        if self.scenario.relative_target:
            return TARGET_RELATIVE * self.best
        return TARGET_EFFICIENCY

    def meets_targets(self) -> bool:
        return (
            self.failure is None
            and self.efficiency >= self.target_efficiency()
            and self.share_429 <= TARGET_429
            and self.rate_limit_lost == 0
        )


def _sleep_until_phase(period: float, share: float) -> None:
    """Sleep until Unix time is *share* of the way into a multiple of *period*."""
    now = time.time()
    at = math.floor(now / period) * period + share * period
    while at < now + _MIN_LEAD:
        at += period
    time.sleep(at - now)


def _timeout(scenario: Scenario) -> float:
    return 5 * (scenario.perfect_seconds() + scenario.latency.mean * 10) + 120


def run_cell(cell: Cell) -> RunRecord:
    """Run one cell (in a worker process): a fresh server, the start phase, the job."""
    record = RunRecord(cell)
    began = time.perf_counter()
    scenario = cell.scenario
    quota = scenario.quota
    try:
        with ServerProcess(
            scenario.rule,
            halve_after_charged=scenario.halve_after,
            options=scenario.server_kwargs(cell.seed),
            backend=scenario.backend,
        ) as server:
            if cell.period is not None and cell.phase is not None:
                _sleep_until_phase(cell.period, cell.phase)
            start_wall = time.time()
            job = Job(
                server.url,
                handle_names(quota.handles),
                quota.limit,
                quota.limit / quota.rate,  # a bucket of limit at the sustainable rate
                peer_in_flight(quota.rate, scenario.latency.mean),
                cell.seed,
            )
            cpu = time.process_time()
            coroutine = asyncio.wait_for(CONTENDERS[cell.contender](job), _timeout(scenario))
            result = asyncio.run(coroutine)
            record.client_cpu = time.process_time() - cpu
            record.stats = server.stats()
        if cell.period is not None:
            record.start_phase = start_wall % cell.period
        record.elapsed, record.ok, record.note = result.elapsed, result.ok, result.note
        record.errors = dict(result.errors)
        record.concurrency, record.in_flight = result.concurrency, result.in_flight
    except TimeoutError:
        record.failure = f"timed out after {_timeout(scenario):.0f} s"
    except Exception as exc:
        record.failure = "".join(traceback.format_exception_only(exc)).strip()
    record.cell_seconds = time.perf_counter() - began
    return record


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


def _progress(record: RunRecord, done: int, total: int, began: float, eta: float) -> str:
    head = f"[{done:>{len(str(total))}}/{total}] {_clock(time.perf_counter() - began)}"
    if record.failure is not None:
        body = f"FAILED: {record.failure}"
    else:
        body = (
            f"efficiency {record.efficiency:.3f}, 429s {100 * record.share_429:.2f} %, "
            f"ok {record.ok}/{record.scenario.quota.handles}, {record.elapsed:.1f} s"
        )
    return f"{head} {record.cell.describe()}: {body} (eta {_clock(eta)})"


def estimate(seconds: Sequence[float], jobs: int) -> float:
    """A guess at the wall time of cells taking *seconds* each on *jobs* workers
    (longest first, each to the least loaded)."""
    loads = [0.0] * max(1, jobs)
    for one in sorted(seconds, reverse=True):
        loads[loads.index(min(loads))] += one
    return max(loads)


def run_cells(
    cells: Sequence[Cell], jobs: int, *, log: Callable[[str], None] | None = None
) -> list[RunRecord]:
    """Run every cell, *jobs* at a time, longest first, one starting at most every
    ``START_GAP`` seconds; the records in *cells*' order."""
    say = log or (lambda line: print(line, file=sys.stderr, flush=True))
    expected = [cell.scenario.expected_seconds() for cell in cells]
    queue = deque(sorted(range(len(cells)), key=lambda i: -expected[i]))
    records: dict[int, RunRecord] = {}
    left = set(queue)
    began = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max(1, jobs), mp_context=context, max_tasks_per_child=1)
    pending: dict[Future[RunRecord], int] = {}
    next_start = 0.0
    try:
        while queue or pending:
            now = time.monotonic()
            if queue and len(pending) < jobs:
                if now >= next_start:
                    index = queue.popleft()
                    pending[pool.submit(run_cell, cells[index])] = index
                    next_start = now + START_GAP
                    continue
                if not pending:
                    time.sleep(next_start - now)
                    continue
                finished, _ = wait(pending, next_start - now, FIRST_COMPLETED)
            else:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                index = pending.pop(future)
                try:
                    record = future.result()
                except Exception as exc:  # the worker process itself died
                    record = RunRecord(cells[index], failure=f"worker failed: {exc!r}")
                records[index] = record
                left.discard(index)
                eta = estimate([expected[i] for i in left], jobs)
                say(_progress(record, len(records), len(cells), began, eta))
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return [records[i] for i in range(len(cells))]
