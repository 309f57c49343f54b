"""``benchmarks.ratelimit --plot``: requests/s and remaining quota over time, this client
vs the naive gather, on one fixed-window fake server (needs matplotlib)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from dumpling_async.testing import RateLimitRule

from ._contenders import RunResult, run_client, run_naive
from ._server import ServerProcess

__all__ = ["plot"]

_BIN = 0.1  # seconds per bar


def _runs(rule: RateLimitRule, handles: list[str]) -> dict[str, RunResult]:
    runs: dict[str, RunResult] = {}
    factories: list[tuple[str, Callable[[str], Coroutine[Any, Any, RunResult]]]] = [
        ("dumpling_async", lambda url: run_client(url, handles, trace=True)),
        ("naive gather", lambda url: run_naive(url, handles)),
    ]
    for name, factory in factories:
        with ServerProcess(rule) as server:
            runs[name] = asyncio.run(factory(server.url))
        print(f"plot run: {name} {runs[name].elapsed:.2f}s", file=sys.stderr)
    return runs


def plot(path: Path, rule: RateLimitRule, handles: list[str], ideal: float) -> None:
    """Run both contenders once more and write the figure to *path*."""
    try:
        import matplotlib
    except ImportError:
        print("--plot needs matplotlib: .venv/bin/pip install matplotlib", file=sys.stderr)
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = _runs(rule, handles)
    horizon = max(run.elapsed for run in runs.values())
    bins = int(horizon / _BIN) + 1
    fig, axes = plt.subplots(3, 2, figsize=(13, 9), sharex=True, sharey="row")
    for col, (name, run) in enumerate(runs.items()):
        times = [(t - run.started, status, rem) for t, status, rem in run.samples]
        ok, limited = [0] * bins, [0] * bins
        for t, status, _ in times:
            counts = limited if status == 429 else ok
            counts[min(bins - 1, int(t / _BIN))] += 1
        x = [i * _BIN for i in range(bins)]
        rate_ok = [n / _BIN for n in ok]
        ax = axes[0][col]
        ax.bar(x, rate_ok, width=_BIN, align="edge", label="200", color="tab:green")
        ax.bar(
            x,
            [n / _BIN for n in limited],
            width=_BIN,
            align="edge",
            bottom=rate_ok,
            label="429",
            color="tab:red",
        )
        ax.axhline(rule.limit / rule.window, color="black", linestyle="--", linewidth=1)
        ax.set_title(f"{name}: {run.elapsed:.2f}s, {sum(limited)} x 429 of {len(times)} responses")
        ax.set_ylabel(f"responses/s ({_BIN:g} s bins)")
        ax.legend(loc="upper right")

        ax = axes[1][col]
        points = [(t, rem) for t, _, rem in times if rem is not None]
        ax.scatter([p[0] for p in points], [p[1] for p in points], s=4, color="tab:blue")
        ax.set_ylabel("X-RateLimit-Remaining")
        ax.set_ylim(-2, rule.limit + 2)

        ax = axes[2][col]
        done = sorted(t for t, status, _ in times if status == 200)
        ax.plot(done, range(1, len(done) + 1), label="profiles received")
        ax.plot([0, ideal], [rule.limit, len(handles)], "k--", linewidth=1, label="ideal")
        ax.set_ylabel("cumulative profiles")
        ax.set_xlabel("seconds since job start")
        ax.legend(loc="lower right")
    fig.suptitle(f"Fixed window {rule.limit} per {rule.window:g}s")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"plot written to {path}")
