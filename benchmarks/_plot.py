"""``benchmarks.ratelimit``'s figures (need matplotlib, imported only here, lazily):

* ``plot_latency`` (``--plot``): efficiency against the mean answer time, this client vs
  aiolimiter vs the naive gather on the fixed window without reset headers, from the rows
  just measured (the mean of the runs, min-max as error bars);
* ``plot_timeline`` (``--timeline``): requests/s and remaining quota over time, this
  client vs the naive gather, on one fixed-window fake server answering at once (two
  more runs).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dumpling_async.testing import RateLimitRule

from ._contenders import RunResult, run_client, run_naive
from ._server import ServerProcess

if TYPE_CHECKING:
    from ._ratelimit_report import Row

__all__ = ["plot_latency", "plot_timeline"]

_SHOWN = ("dumpling_async", "aiolimiter", "naive gather")

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


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        print("plotting needs matplotlib: .venv/bin/pip install matplotlib", file=sys.stderr)
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_latency(path: Path, rows: Sequence[Row]) -> bool:
    """Efficiency against mean answer time on the fixed window, reset "none" (no tail);
    False when *rows* have none of it."""
    chosen = [
        r
        for r in rows
        if r.scenario.name == "fixed"
        and r.scenario.reset == "none"
        and r.scenario.latency.tail_every is None
        and r.contender in _SHOWN
    ]
    quotas = [r.scenario.quota for r in chosen]
    if not chosen:
        print("--plot needs fixed-window rows without reset headers", file=sys.stderr)
        return False
    quota = max(set(quotas), key=quotas.count)  # the quota most rows have
    plt = _pyplot()
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(8, 5))
    for name in _SHOWN:
        points = sorted(
            (r.scenario.latency.mean, [run.efficiency for run in r.runs])
            for r in chosen
            if r.contender == name and r.scenario.quota == quota
        )
        if not points:
            continue
        x = [mean for mean, _ in points]
        y = [sum(runs) / len(runs) for _, runs in points]
        low = [m - min(runs) for m, (_, runs) in zip(y, points, strict=True)]
        high = [max(runs) - m for m, (_, runs) in zip(y, points, strict=True)]
        ax.errorbar(x, y, yerr=[low, high], marker="o", capsize=4, label=name)
    ax.axhline(0.95, color="black", linestyle="--", linewidth=1, label="target 0.95")
    ax.set_xticks(sorted({r.scenario.latency.mean for r in chosen if r.scenario.quota == quota}))
    ax.set_xlabel("mean answer time of the server, s (uniform 0.5-1.5 x the mean)")
    ax.set_ylabel("efficiency: (ideal + mean answer time) / elapsed")
    ax.set_ylim(0, max(1.05, ax.get_ylim()[1]))
    ax.set_title(
        f"Fixed window {quota.limit} per {quota.window:g} s, {quota.handles} handles, "
        "no reset header (min-max over the runs)"
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"plot written to {path}")
    return True


def plot_timeline(path: Path, rule: RateLimitRule, handles: list[str], ideal: float) -> None:
    """Run both contenders once more and write the figure to *path*."""
    plt = _pyplot()
    if plt is None:
        return

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
