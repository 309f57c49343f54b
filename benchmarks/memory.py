"""Peak memory of ``iter_profiles`` as the number of unique handles grows.

    .venv/bin/python -m benchmarks.memory            # 10k and 100k, ~1 minute
    .venv/bin/python -m benchmarks.memory --quick    # 2k and 20k, ~15 s
    .venv/bin/python -m benchmarks.memory --handles 10000000   # + 10M, in memory, ~15 min

Each size runs in a fresh Python subprocess (so the peaks are independent). When every
size is at most 200,000 handles it talks to an unlimited ``FakeDumplingServer`` in yet
another process; when any is larger (all sizes then, so that their peaks compare), or
with ``--transport memory``, the client's transport is swapped for one that answers
every request in memory with one canned profile (no socket: ten million lookups over
127.0.0.1 would take over half an hour, and what is measured is the client's memory).
The child feeds a generator of unique handles ``user0 .. user{N-1}`` to
``client.iter_profiles`` and counts the results without keeping them, then reports
its peak RSS (Linux's ``VmHWM``, see ``_maxrss_kib``). ``iter_profiles`` keeps
nothing per handle but its dedupe entry (a 16-byte digest and a position), so the peak
grows by a few tens of bytes per handle: the table prints that as bytes per unique
handle, between each size and the smallest. Targets: peak at 100k <= peak at 10k + 15 MB;
at 10,000,000 handles, peak RSS <= 300 MB.

    .venv/bin/python -m benchmarks.memory --cli 100000              # + the command line
    .venv/bin/python -m benchmarks.memory --cli 100000 --resume-rows 1000000

``--cli N`` runs ``dumpling-async profiles`` over N unique handles into JSONL and into a
SQLite database (fresh processes, the unlimited fake server over sockets), then resumes
the database (nothing left to do) and refreshes it with ``--max-age 1h`` (nothing stale):
peak RSS, elapsed time, requests sent, and throughput against ``iter_profiles`` over the
same handles in the same run (target: SQLite >= 0.85 x ``iter_profiles``).
Past 200,000 handles (or with ``--transport memory``) every step runs in memory: the
command line's client gets the canned transport, and the requests column counts what
reached it.
``--resume-rows R`` also builds a database of R rows (through the output's own writes,
no requests) and times a resume and a refresh of it (targets for 1,000,000 rows: <= 5 s,
<= 100 MB; no request).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

API_KEY = "bench-key"
TARGET_MB = 15.0
TARGET_10M_MB = 300.0
SOCKET_MOST = 200_000  # larger sizes use the in-memory transport unless told otherwise
CHECKPOINTS = 10  # peak RSS samples through the job, to show how the peak grows
ROOT = Path(__file__).resolve().parent.parent


def _maxrss_kib() -> int:
    """This process's peak RSS in KiB. Linux's ``VmHWM`` first: ``ru_maxrss`` carries the
    peak of the process it was forked from across the exec, so a child of a parent that
    once held more would report the parent's."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _write_handles(path: Path, count: int) -> None:
    """``user0`` .. ``user{count-1}``, a line each, written a chunk at a time (the parent
    stays small: see ``_maxrss_kib``)."""
    with path.open("w", encoding="ascii") as out:
        for start in range(0, count, 100_000):
            out.write("".join(f"user{i}\n" for i in range(start, min(count, start + 100_000))))


# -- the child ---------------------------------------------------------------------------------


def _handles(count: int) -> Iterator[str]:
    for i in range(count):
        yield f"user{i}"


class _CannedTransport:
    """Answers every request with one profile, in memory (the ``Transport`` protocol)."""

    def __init__(self) -> None:
        from multidict import CIMultiDict, CIMultiDictProxy

        from dumpling_async.testing import fake_profile

        self._body = json.dumps(fake_profile("user0")).encode()
        self._headers = CIMultiDictProxy(CIMultiDict({"Content-Type": "application/json"}))
        self.requests = 0

    async def post(self, url: Any, body: bytes, progress: Any) -> Any:
        from dumpling_async._core.transport import Response

        self.requests += 1
        progress.leave()
        progress.status = 200
        return Response(200, self._headers, self._body, None)

    async def aclose(self) -> None:
        pass


async def _child_job(url: str, count: int) -> dict[str, object]:
    from dumpling_async import AsyncDumplingClient

    results = ok = 0
    step = max(1, count // CHECKPOINTS)
    checkpoints: list[tuple[int, int]] = []
    base_url = "http://127.0.0.1:9" if url == "memory" else url
    async with AsyncDumplingClient(API_KEY, base_url=base_url) as client:
        if url == "memory":
            client._pipeline.transport = _CannedTransport()  # a benchmark's private swap
        baseline = _maxrss_kib()
        started = time.perf_counter()
        async for result in client.iter_profiles(_handles(count)):
            results += 1
            ok += result.ok
            if results % step == 0:
                checkpoints.append((results, _maxrss_kib()))
        elapsed = time.perf_counter() - started
    return {
        "count": count,
        "transport": url if url == "memory" else "socket",
        "results": results,
        "ok": ok,
        "baseline_kib": baseline,
        "maxrss_kib": _maxrss_kib(),
        "elapsed": elapsed,
        "checkpoints": checkpoints,
    }


def _cli_child(transport: str, args: list[str]) -> int:
    """Run the command line in this process and report its peak RSS, time and requests
    (in memory: its client's transport swapped, as ``_child_job`` does)."""
    import runpy

    canned = _CannedTransport()
    if transport == "memory":
        from dumpling_async.cli import _bulk_run

        make_client = _bulk_run.make_client

        def swapped(*given: Any, **options: Any) -> Any:
            client = make_client(*given, **options)
            client._pipeline.transport = canned  # a benchmark's private swap
            return client

        _bulk_run.make_client = swapped  # type: ignore[assignment]
    sys.argv = ["dumpling-async", *args]
    started = time.perf_counter()
    code: object = 0
    try:
        runpy.run_module("dumpling_async", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code
    elapsed = time.perf_counter() - started
    report = {"code": code, "maxrss_kib": _maxrss_kib(), "elapsed": elapsed}
    print(json.dumps({**report, "requests": canned.requests}))
    return 0


def child_main(url: str, count: int) -> int:
    report = asyncio.run(_child_job(url, count))
    print(json.dumps(report))
    return 0


# -- the parent --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChildReport:
    count: int
    transport: str
    results: int
    ok: int
    baseline_kib: int
    maxrss_kib: int
    elapsed: float
    checkpoints: list[tuple[int, int]]

    @property
    def peak_mb(self) -> float:
        return self.maxrss_kib / 1024

    @property
    def job_mb(self) -> float:
        return (self.maxrss_kib - self.baseline_kib) / 1024

    def growth_kib_per_1k(self) -> float | None:
        """Peak RSS growth per 1,000 handles over the second half of the job."""
        points = [(n, kib) for n, kib in self.checkpoints if n >= self.count // 2]
        if len(points) < 2 or points[-1][0] == points[0][0]:
            return None
        (n0, k0), (n1, k1) = points[0], points[-1]
        return (k1 - k0) / (n1 - n0) * 1000


def run_child(count: int, transport: str) -> ChildReport:
    from ._server import ServerProcess

    def child(url: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "benchmarks.memory", "--child", str(count), url]
        return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)

    if transport == "memory":
        completed = child("memory")
    else:
        with ServerProcess(None) as server:
            completed = child(server.url)
    if completed.returncode != 0:
        raise RuntimeError(f"child for {count} failed:\n{completed.stderr}")
    data = json.loads(completed.stdout.strip().splitlines()[-1])
    data["checkpoints"] = [tuple(point) for point in data["checkpoints"]]
    return ChildReport(**data)


def print_table(reports: Sequence[ChildReport]) -> bool:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(title="iter_profiles peak RSS, one fresh process per size", box=box.SIMPLE)
    table.add_column("handles", justify="right")
    for column in (
        "transport",
        "results",
        "ok",
        "elapsed s",
        "RSS before job MB",
        "peak RSS MB",
        "job MB",
        "vs smallest MB",
        "growth KiB/1k handles",
        "bytes / unique handle",
    ):
        table.add_column(column, justify="right")
    smallest = reports[0]
    for report in reports:
        growth = report.growth_kib_per_1k()
        added = report.count - smallest.count
        per_handle = (report.maxrss_kib - smallest.maxrss_kib) * 1024 / added if added else None
        table.add_row(
            f"{report.count:,}",
            report.transport,
            f"{report.results:,}",
            f"{report.ok:,}",
            f"{report.elapsed:.1f}",
            f"{report.baseline_kib / 1024:.1f}",
            f"{report.peak_mb:.1f}",
            f"{report.job_mb:.1f}",
            f"{report.peak_mb - smallest.peak_mb:+.1f}",
            f"{growth:.1f}" if growth is not None else "-",
            f"{per_handle:.0f}" if per_handle is not None else "-",
        )
    console = Console(width=200, highlight=False)
    console.print(table)
    console.print(
        "peak RSS = VmHWM of the child process (KiB / 1024); RSS before job = its peak "
        "after imports and client creation;\ngrowth = peak RSS increase per 1,000 handles "
        "over the second half of the job (0 when memory is bounded);\nbytes / unique handle = "
        "(peak - the smallest size's peak) / (handles - the smallest size's handles)."
    )
    largest = reports[-1]
    difference = largest.peak_mb - smallest.peak_mb
    met = difference <= TARGET_MB and all(r.results == r.count for r in reports)
    print(
        f"target: peak at {largest.count:,} <= peak at {smallest.count:,} + {TARGET_MB:g} MB: "
        f"{largest.peak_mb:.1f} MB vs {smallest.peak_mb:.1f} + {TARGET_MB:g} MB "
        f"(difference {difference:+.1f} MB) -> {'met' if met else 'NOT met'}"
        + (
            ""
            if (smallest.count, largest.count) == (10_000, 100_000)
            else " (target is for 10k/100k)"
        )
    )
    for report in reports:
        if report.count >= 10_000_000:
            within = report.peak_mb <= TARGET_10M_MB and report.results == report.count
            print(
                f"target: peak at {report.count:,} <= {TARGET_10M_MB:g} MB: "
                f"{report.peak_mb:.1f} MB -> {'met' if within else 'NOT met'}"
            )
            met = met and within
    return met


# -- the command line -------------------------------------------------------------------------


@dataclass(frozen=True)
class CliRow:
    what: str
    code: object
    peak_mb: float
    elapsed: float
    requests: int  # what the server saw during this step


def _run_cli(what: str, args: list[str], server: Any) -> CliRow:
    """One command line step in a fresh process: over sockets to *server*, or (None) in
    memory."""
    import os

    before = server.stats().requests if server is not None else 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUMPLING")}
    env["DUMPLINGAI_API_KEY"] = API_KEY
    transport = "socket" if server is not None else "memory"
    command = [sys.executable, "-m", "benchmarks.memory", "--cli-child", transport, *args]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env, check=False)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"command line failed:\n{done.stderr}")
    data = json.loads(lines[-1])
    requests = server.stats().requests - before if server is not None else data["requests"]
    return CliRow(what, data["code"], data["maxrss_kib"] / 1024, data["elapsed"], requests)


def _build_database(path: Path, rows: int) -> float:
    """A database of *rows* ok profiles, written through the output's own writes."""
    from dumpling_async._core.converter import structure_profile
    from dumpling_async._results import ProfileResult
    from dumpling_async.cli._database import DatabaseOutput
    from dumpling_async.cli._input import InputEntry
    from dumpling_async.cli._output import Retry
    from dumpling_async.testing import fake_profile

    started = time.perf_counter()
    out = DatabaseOutput(str(path), resume=True, retry=Retry(), max_age=None)
    try:
        for i in range(rows):
            handle = f"user{i}"
            profile = structure_profile(fake_profile(handle))
            result = ProfileResult(index=i, input=handle, handle=handle, profile=profile)
            out.record(InputEntry(index=i, line=i + 1, text=handle), result)
    finally:
        out.close()
    return time.perf_counter() - started


def run_cli_benchmark(count: int, resume_rows: int | None, transport: str) -> None:
    import contextlib
    import tempfile

    from ._server import ServerProcess

    rows: list[CliRow] = []
    if transport == "auto":
        transport = "memory" if count > SOCKET_MOST else "socket"
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        server = stack.enter_context(ServerProcess(None)) if transport == "socket" else None
        url = server.url if server is not None else "http://127.0.0.1:9"  # never reached
        folder = Path(tmp)
        source = folder / "handles.txt"
        _write_handles(source, count)
        base = ["profiles", str(source), "--base-url", url, "-q", "-o"]
        started = time.perf_counter()
        alone = run_child(count, transport)
        print(f"iter_profiles over {count:,}: {alone.elapsed:.1f}s", file=sys.stderr)
        for name in ("out.jsonl", "out.db"):
            rows.append(_run_cli(f"to {name}", [*base, str(folder / name)], server))
        database = str(folder / "out.db")
        rows.append(_run_cli("resume out.db", [*base, database], server))
        rows.append(_run_cli("--max-age 1h out.db", [*base, database, "--max-age", "1h"], server))
        if resume_rows:
            big = folder / "big.db"
            built = _build_database(big, resume_rows)
            print(f"built {resume_rows:,} rows in {built:.0f}s", file=sys.stderr)
            big_source = folder / "big.txt"
            _write_handles(big_source, resume_rows)
            args = ["profiles", str(big_source), "--base-url", url, "-q", "-o", str(big)]
            rows.append(_run_cli(f"resume {resume_rows:,} rows", args, server))
            refresh = [*args, "--max-age", "1h"]
            rows.append(_run_cli(f"--max-age 1h, {resume_rows:,} rows", refresh, server))
        print(f"command line steps took {time.perf_counter() - started:.0f}s", file=sys.stderr)
    from rich import box
    from rich.console import Console
    from rich.table import Table

    title = f"the command line over {count:,} unique handles ({transport})"
    table = Table(title=title, box=box.SIMPLE)
    for column in ("step", "exit", "peak RSS MB", "elapsed s", "handles/s", "requests"):
        table.add_column(column, justify="right")
    table.add_row("iter_profiles alone", "-", f"{alone.peak_mb:.1f}", f"{alone.elapsed:.1f}",
                  f"{count / alone.elapsed:,.0f}", "-")  # fmt: skip
    for row in rows:
        rate = f"{count / row.elapsed:,.0f}" if row.what.startswith("to ") else "-"
        table.add_row(row.what, str(row.code), f"{row.peak_mb:.1f}", f"{row.elapsed:.1f}", rate,
                      f"{row.requests:,}")  # fmt: skip
    Console(width=200, highlight=False).print(table)
    to_db = next(r for r in rows if r.what == "to out.db")
    print(f"SQLite throughput / iter_profiles: {alone.elapsed / to_db.elapsed:.2f} (target 0.85)")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.memory",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="2,000 and 20,000 handles")
    parser.add_argument(
        "--sizes", type=int, nargs="+", help="handle counts to run (default 10000 100000)"
    )
    parser.add_argument(
        "--handles",
        type=int,
        action="append",
        default=[],
        help="one more size to run (repeatable), e.g. 10000000",
    )
    parser.add_argument(
        "--transport",
        choices=("auto", "socket", "memory"),
        default="auto",
        help=f"socket: the fake server; memory: in-memory answers; auto: socket up to "
        f"{SOCKET_MOST:,} handles, and every size in memory if any is larger",
    )
    parser.add_argument(
        "--cli", type=int, metavar="N", help="also the command line over N handles (see above)"
    )
    parser.add_argument(
        "--resume-rows", type=int, metavar="R", help="with --cli: resume a database of R rows"
    )
    parser.add_argument("--child", nargs=2, metavar=("COUNT", "URL"), help=argparse.SUPPRESS)
    parser.add_argument("--cli-child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        count, url = args.child
        return child_main(url, int(count))
    if args.cli_child is not None:
        return _cli_child(args.cli_child[0], args.cli_child[1:])
    if args.cli is not None:
        run_cli_benchmark(args.cli, args.resume_rows, args.transport)
        if not (args.sizes or args.handles or args.quick):
            return 0
    sizes = sorted(
        {*(args.sizes or ([2_000, 20_000] if args.quick else [10_000, 100_000])), *args.handles}
    )
    transport = args.transport
    if transport == "auto":  # one transport for every size, so that their peaks compare
        transport = "memory" if sizes[-1] > SOCKET_MOST else "socket"
    started = time.perf_counter()
    reports = []
    for count in sizes:
        print(f"running iter_profiles over {count:,} handles ({transport})", file=sys.stderr)
        reports.append(run_child(count, transport))
    print_table(reports)
    print(f"total benchmark time {time.perf_counter() - started:.0f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
