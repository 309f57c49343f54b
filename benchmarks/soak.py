"""Long-run soak: a bulk job against a faulty, rate-limited fake server for N minutes.

    python -m benchmarks.soak --minutes 10

The server runs in its own process with a sliding-window limit and 5 % random faults of
every kind; the client streams an endless input through ``iter_profiles``. Reported:
requests, outcomes, 429s, double charges (must be 0), and the client's open file
descriptors and RSS after warm-up and at the end (must be flat).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Any

from dumpling_async import AsyncDumplingClient, RetryPolicy
from dumpling_async.testing import FakeDumplingServer, FaultPlan, RateLimitRule


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _serve(conn: Connection, rate: int, fault_rate: float) -> None:
    plan = FaultPlan(
        rate=fault_rate, seed=7, slow_seconds=3.0, oversized_bytes=6 * 1024 * 1024, retry_after=0.05
    )
    async with FakeDumplingServer(
        rate_limit=RateLimitRule(rate, 1.0, "sliding"), faults=plan
    ) as server:
        conn.send(server.url)
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        loop.add_reader(conn.fileno(), done.set)
        await done.wait()
        conn.recv()
        charged = server.charged
        conn.send(
            {
                "requests": server.requests,
                "rate_limited": server.rate_limited,
                "statuses": dict(server.statuses()),
                "unique_charged": len(charged),
                "double_charged": sum(1 for c in charged.values() if c > 1),
                "credits": server.credits_charged,
            }
        )
        server.records.clear()


def _child(conn: Connection, rate: int, fault_rate: float) -> None:
    asyncio.run(_serve(conn, rate, fault_rate))


def _handles() -> Iterator[str]:
    i = 0
    while True:
        i += 1
        yield f"soak{i - 7}" if i % 20 == 0 else f"soak{i}"  # 5 % recent repeats


async def _client(url: str, seconds: float) -> dict[str, Any]:
    outcomes: Counter[str] = Counter()
    snapshots: dict[str, tuple[float, int]] = {}
    started = time.monotonic()
    warm = started + min(30.0, seconds / 10)
    async with AsyncDumplingClient(
        "soak-key", base_url=url, timeout=2.0, retry=RetryPolicy(backoff_base=0.05)
    ) as client:
        async with contextlib.aclosing(client.iter_profiles(_handles(), concurrency=32)) as it:
            async for result in it:
                outcomes["ok" if result.ok else type(result.error).__name__] += 1
                now = time.monotonic()
                if "start" not in snapshots and now >= warm:
                    snapshots["start"] = (_rss_mb(), _fds())
                if now - started >= seconds:
                    break
        snapshots["end"] = (_rss_mb(), _fds())
        state = client.rate_limit
        spent = client.credits_spent
    return {
        "elapsed": time.monotonic() - started,
        "outcomes": dict(outcomes),
        "snapshots": snapshots,
        "client_429s": state.rate_limited,
        "throttled": state.throttled_seconds,
        "credits_spent": spent,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--rate", type=int, default=400, help="server limit per second")
    parser.add_argument("--fault-rate", type=float, default=0.05)
    args = parser.parse_args()
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_child, args=(child, args.rate, args.fault_rate), daemon=True)
    proc.start()
    url = parent.recv()
    report = asyncio.run(_client(url, args.minutes * 60))
    parent.send("stats")
    server = parent.recv()
    proc.join(timeout=10)
    (rss0, fd0), (rss1, fd1) = report["snapshots"]["start"], report["snapshots"]["end"]
    total = sum(report["outcomes"].values())
    print(
        f"soak: {args.minutes:g} min, server limit {args.rate}/s sliding, "
        f"{args.fault_rate:.0%} faults"
    )
    print(f"  results            {total:,} in {report['elapsed']:.0f} s")
    print(f"  outcomes           {report['outcomes']}")
    print(f"  server requests    {server['requests']:,}  statuses {server['statuses']}")
    print(
        f"  429s               {server['rate_limited']:,} from the quota "
        f"({server['rate_limited'] / max(1, server['requests']):.2%} of requests)"
    )
    print(
        f"  charged            {server['unique_charged']:,} handles, "
        f"double charges: {server['double_charged']}"
    )
    print(f"  RSS MB             {rss0:.1f} -> {rss1:.1f}")
    print(f"  open fds           {fd0} -> {fd1}")
    print(f"  time throttled     {report['throttled']:.0f} s")


if __name__ == "__main__":
    main()
