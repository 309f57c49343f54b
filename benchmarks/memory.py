"""Peak memory of ``iter_profiles`` over 10,000 vs 100,000 unique handles.

    .venv/bin/python -m benchmarks.memory            # 10k and 100k, ~1 minute
    .venv/bin/python -m benchmarks.memory --quick    # 2k and 20k, ~15 s

Each size runs in a fresh Python subprocess (so the peaks are independent), against an
unlimited ``FakeDumplingServer`` in yet another process. The child feeds a generator of
unique handles ``user0 .. user{N-1}`` to ``client.iter_profiles`` and counts the results
without keeping them, then reports ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (KiB
on Linux). ``iter_profiles`` promises bounded memory, so the peak should barely depend
on N. Target: peak at 100k <= peak at 10k + 15 MB.
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

API_KEY = "bench-key"
TARGET_MB = 15.0
CHECKPOINTS = 10  # ru_maxrss samples through the job, to show how the peak grows
ROOT = Path(__file__).resolve().parent.parent


def _maxrss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# -- the child ---------------------------------------------------------------------------------


def _handles(count: int) -> Iterator[str]:
    for i in range(count):
        yield f"user{i}"


async def _child_job(url: str, count: int) -> dict[str, object]:
    from dumpling_async import AsyncDumplingClient

    results = ok = 0
    step = max(1, count // CHECKPOINTS)
    checkpoints: list[tuple[int, int]] = []
    async with AsyncDumplingClient(API_KEY, base_url=url) as client:
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
        "results": results,
        "ok": ok,
        "baseline_kib": baseline,
        "maxrss_kib": _maxrss_kib(),
        "elapsed": elapsed,
        "checkpoints": checkpoints,
    }


def child_main(url: str, count: int) -> int:
    report = asyncio.run(_child_job(url, count))
    print(json.dumps(report))
    return 0


# -- the parent --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChildReport:
    count: int
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
        """ru_maxrss growth per 1,000 handles over the second half of the job."""
        points = [(n, kib) for n, kib in self.checkpoints if n >= self.count // 2]
        if len(points) < 2 or points[-1][0] == points[0][0]:
            return None
        (n0, k0), (n1, k1) = points[0], points[-1]
        return (k1 - k0) / (n1 - n0) * 1000


def run_child(count: int) -> ChildReport:
    from ._server import ServerProcess

    with ServerProcess(None) as server:
        completed = subprocess.run(
            [sys.executable, "-m", "benchmarks.memory", "--child", str(count), server.url],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
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
        "results",
        "ok",
        "elapsed s",
        "RSS before job MB",
        "peak RSS MB",
        "job MB",
        "vs smallest MB",
        "growth KiB/1k handles",
    ):
        table.add_column(column, justify="right")
    smallest = reports[0]
    for report in reports:
        growth = report.growth_kib_per_1k()
        table.add_row(
            f"{report.count:,}",
            f"{report.results:,}",
            f"{report.ok:,}",
            f"{report.elapsed:.1f}",
            f"{report.baseline_kib / 1024:.1f}",
            f"{report.peak_mb:.1f}",
            f"{report.job_mb:.1f}",
            f"{report.peak_mb - smallest.peak_mb:+.1f}",
            f"{growth:.1f}" if growth is not None else "-",
        )
    console = Console(width=200, highlight=False)
    console.print(table)
    console.print(
        "peak RSS = ru_maxrss of the child process (KiB / 1024); RSS before job = ru_maxrss "
        "after imports and client creation;\ngrowth = ru_maxrss increase per 1,000 handles "
        "over the second half of the job (0 when memory is bounded)."
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
    return met


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
    parser.add_argument("--child", nargs=2, metavar=("COUNT", "URL"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        count, url = args.child
        return child_main(url, int(count))
    sizes = sorted(args.sizes or ([2_000, 20_000] if args.quick else [10_000, 100_000]))
    started = time.perf_counter()
    reports = []
    for count in sizes:
        print(f"running iter_profiles over {count:,} handles", file=sys.stderr)
        reports.append(run_child(count))
    print_table(reports)
    print(f"total benchmark time {time.perf_counter() - started:.0f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
