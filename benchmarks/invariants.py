"""Money invariants under chaos: seeded random runs against a server that charges what its
clients gave up on.

    python -m benchmarks.invariants --runs 400            # the long soak, a few minutes
    python -m benchmarks.invariants --runs 100 --redis    # half the runs share a Redis
                                                          # budget that restarts mid-run

Each run draws from its seed: the input (duplicates, invalid lines, an input that breaks
part way), the client (timeout, concurrency, credit budget, whether unanswered requests
are retried) and what goes wrong (5xx, 429, drops, slow answers, answers slower than the
timeout, a callback that raises, the consumer cancelled, a Redis restart). The server
is a ``FakeDumplingServer(charge_abandoned=True)``: a request whose client left is
finished and charged. After every run:

* what the server charged <= ``max_credits``;
* confirmed + uncertain credits >= what the server charged, and confirmed <= it;
* every input position read has exactly one result (none when the run was cancelled or
  its callback failed: then at most one);
* no handle is charged twice, unless retrying unanswered requests was opted in.

``tests/test_invariants.py`` runs a few dozen seeds of the same in the suite.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import attrs

from dumpling_async import (
    AsyncDumplingClient,
    CreditBudget,
    InputFailedError,
    LocalCreditBudget,
    ProfileResult,
    RetryPolicy,
)
from dumpling_async.testing import FakeDumplingServer, FaultPlan

from ._webload_procs import wait_for_port

KEY = "chaos-key"
# Faults whose 200s the fake server does not charge are left out: a real server charges
# a 200 however its body ends, and the client counts it so (see the fake's docstring).
KINDS = ("500", "502", "503", "429", "drop", "slow", "latency")


@attrs.frozen
class Report:
    """One run: what happened, and the invariants it broke (none, we hope)."""

    seed: int
    mode: str
    inputs: int
    results: int
    charged: int
    confirmed: int
    uncertain: int
    max_credits: int | None
    retry_unanswered: bool
    redis: bool
    violations: tuple[str, ...]


def _inputs(rng: random.Random) -> tuple[list[object], int | None]:
    """Handles with repeats and invalid lines, and where the input breaks (None: never)."""
    unique = [f"chaos_{rng.randrange(10**6)}_{i}" for i in range(rng.randint(5, 40))]
    items: list[object] = [rng.choice(unique) for _ in range(rng.randint(10, 60))]
    for _ in range(rng.randint(0, 3)):
        items.insert(rng.randrange(len(items) + 1), rng.choice(["bad handle!", 7, "@"]))
    breaks = rng.randrange(len(items)) if rng.random() < 0.25 else None
    return items, breaks


async def _feed(items: list[object], breaks: int | None, slow: bool) -> AsyncIterator[object]:
    for index, item in enumerate(items):
        if index == breaks:
            raise ConnectionResetError("input broke")
        if slow:
            await asyncio.sleep(0.001)
        yield item


def _sync_feed(items: list[object], breaks: int | None) -> Iterator[object]:
    for index, item in enumerate(items):
        if index == breaks:
            raise ConnectionResetError("input broke")
        yield item


async def _consume(
    client: AsyncDumplingClient, mode: str, source: Any, rng: random.Random
) -> tuple[list[ProfileResult], bool]:
    """Run the bulk call; its results, and whether every position read must have one."""
    if mode == "gather":
        try:
            return await client.gather_profiles(source), True
        except InputFailedError as exc:
            return list(exc.results), True
    results: list[ProfileResult] = []
    fail_at = rng.randint(1, 30) if mode == "callback" else None

    def on_result(result: ProfileResult) -> None:
        if fail_at is not None and len(results) + 1 == fail_at:
            raise RuntimeError("callback failed")

    async def iterate() -> None:
        async for result in client.iter_profiles(source, on_result=on_result):
            results.append(result)

    task = asyncio.ensure_future(iterate())
    if mode == "cancel":
        await asyncio.sleep(rng.uniform(0.0, 0.3))
        task.cancel()
    try:
        await task
    except ConnectionResetError:  # the input broke: what was read was still answered
        return results, True
    except (asyncio.CancelledError, RuntimeError):
        return results, False
    return results, True


def _check(
    server: FakeDumplingServer,
    client: AsyncDumplingClient,
    results: list[ProfileResult],
    positions: int,
    complete: bool,
    max_credits: int | None,
    retry_unanswered: bool,
) -> tuple[str, ...]:
    found = []
    charged = server.credits_charged
    if max_credits is not None and charged > max_credits:
        found.append(f"server charged {charged} > max_credits {max_credits}")
    confirmed, uncertain = client.credits_spent, client.credits_uncertain
    if confirmed + uncertain < charged:
        found.append(f"confirmed {confirmed} + uncertain {uncertain} < charged {charged}")
    if confirmed > charged:
        found.append(f"confirmed {confirmed} > charged {charged}")
    indexes = Counter(r.index for r in results)
    if any(n > 1 for n in indexes.values()):
        found.append("a position has two results")
    if complete and set(indexes) != set(range(positions)):
        found.append(f"positions {sorted(set(range(positions)) - set(indexes))[:5]} lost")
    twice = [h for h, n in server.charged.items() if n > 1]
    if twice and not retry_unanswered:
        found.append(f"charged twice: {twice[:3]}")
    return tuple(found)


async def chaos_run(
    seed: int, *, redis_url: str | None = None, restart: Callable[[], None] | None = None
) -> Report:
    """One seeded run; *restart* (with *redis_url*) restarts Redis mid-run."""
    rng = random.Random(seed)
    items, breaks = _inputs(rng)
    mode = rng.choice(["gather", "gather", "iter", "callback", "cancel"])
    max_credits = rng.choice([None, rng.randrange(30, 300, 10)])
    retry_unanswered = rng.random() < 0.15
    plan = FaultPlan(
        rate=rng.uniform(0.0, 0.4), kinds=KINDS, seed=seed, slow_seconds=0.3, retry_after=0.01
    )
    budget: CreditBudget = LocalCreditBudget(max_credits)
    if redis_url is not None:
        from dumpling_async.redis import RedisCreditBudget

        budget = RedisCreditBudget(
            redis_url, api_key=f"{KEY}-{seed}", max_credits=max_credits, stale_after=30
        )
    async with FakeDumplingServer(faults=plan, charge_abandoned=True) as server:
        async with AsyncDumplingClient(
            KEY,
            base_url=server.url,
            timeout=rng.uniform(0.03, 0.25),
            max_concurrency=rng.choice([1, 4, 16]),
            credit_budget=budget,
            retry=RetryPolicy(
                backoff_base=0.001, backoff_max=0.01, retry_unanswered=retry_unanswered
            ),
        ) as client:
            async_input = rng.random() < 0.5
            source = _feed(items, breaks, rng.random() < 0.5) if async_input else None
            source = source or _sync_feed(items, breaks)
            timer = None
            if restart is not None:
                loop = asyncio.get_running_loop()
                timer = loop.call_later(rng.uniform(0.0, 0.2), restart)
            results, complete = await _consume(client, mode, source, rng)
            if timer is not None:
                timer.cancel()  # the run ended first: no restart this time
        async with asyncio.timeout(10):
            await server.idle()
        positions = len(items) if breaks is None else breaks
        violations = _check(
            server, client, results, positions, complete, max_credits, retry_unanswered
        )
    if redis_url is not None:
        await budget.aclose()  # type: ignore[attr-defined]
    return Report(
        seed=seed,
        mode=mode,
        inputs=len(items),
        results=len(results),
        charged=server.credits_charged,
        confirmed=client.credits_spent,
        uncertain=client.credits_uncertain,
        max_credits=max_credits,
        retry_unanswered=retry_unanswered,
        redis=redis_url is not None,
        violations=violations,
    )


class _Redis:
    """A throwaway redis-server on a free loopback port, restartable (nothing saved)."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server not found (make test installs it)")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = tempfile.TemporaryDirectory()
        self._args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        self._args += ["--appendonly", "no", "--dir", self._dir.name]
        self._start()

    def _start(self) -> None:
        self._proc = subprocess.Popen(self._args, stdout=subprocess.DEVNULL)
        wait_for_port(self.port, timeout=10)

    def restart(self) -> None:
        self.stop()
        self._start()

    def stop(self) -> None:
        self._proc.terminate()
        self._proc.wait(10)


async def _main(runs: int, first: int, with_redis: bool) -> int:
    redis = _Redis() if with_redis else None
    totals: Counter[str] = Counter()
    broken: list[Report] = []
    started = time.monotonic()
    try:
        for seed in range(first, first + runs):
            shared = redis is not None and seed % 2 == 0
            report = await chaos_run(
                seed,
                redis_url=redis.url if shared and redis else None,
                restart=redis.restart if shared and redis else None,
            )
            totals.update(
                runs=1,
                inputs=report.inputs,
                results=report.results,
                charged=report.charged,
                confirmed=report.confirmed,
                uncertain=report.uncertain,
                redis_runs=int(report.redis),
                violations=len(report.violations),
            )
            if report.violations:
                broken.append(report)
                print(f"seed {seed}: {report.violations}", file=sys.stderr)
    finally:
        if redis is not None:
            redis.stop()
    elapsed = time.monotonic() - started
    print(
        f"{totals['runs']} runs ({totals['redis_runs']} with a Redis budget restarted "
        f"mid-run) in {elapsed:.0f}s: {totals['inputs']} inputs, {totals['results']} "
        f"results; credits charged by the server {totals['charged']}, confirmed "
        f"{totals['confirmed']}, uncertain {totals['uncertain']}; violations "
        f"{totals['violations']}"
    )
    return 1 if broken else 0


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.invariants", description=__doc__)
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--redis", action="store_true", help="half the runs on a Redis budget")
    args = parser.parse_args()
    raise SystemExit(asyncio.run(_main(args.runs, args.first_seed, args.redis)))


if __name__ == "__main__":
    main()
