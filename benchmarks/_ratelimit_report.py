"""``benchmarks.ratelimit``'s report: the runs of each (scenario, contender) as one row
(min-max over the runs), the rich table, the verdict and the JSON file."""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._ratelimit_matrix import TARGET_429, TARGET_EFFICIENCY, TARGET_RELATIVE, Scenario
from ._ratelimit_run import RunRecord

__all__ = ["Row", "group_rows", "print_table", "verdict", "write_json"]

TARGETS_TEXT = (
    f"targets: efficiency >= {TARGET_EFFICIENCY} (sliding_counter: >= {TARGET_RELATIVE} x best) "
    f"and 429s <= {100 * TARGET_429:g} % in every run, no lookup lost to the rate limit"
)


@dataclass
class Row:
    """One contender on one scenario: its runs."""

    scenario: Scenario
    contender: str
    runs: list[RunRecord]

    def span(self, values: Sequence[float]) -> tuple[float, float]:
        clean = [v for v in values if not math.isnan(v)]
        return (min(clean), max(clean)) if clean else (math.nan, math.nan)

    @property
    def efficiency(self) -> tuple[float, float]:
        return self.span([r.efficiency for r in self.runs])

    @property
    def best(self) -> tuple[float, float]:
        return self.span([r.best for r in self.runs])

    @property
    def share_429(self) -> tuple[float, float]:
        return self.span([r.share_429 for r in self.runs])

    @property
    def elapsed(self) -> tuple[float, float]:
        return self.span([r.elapsed for r in self.runs])

    @property
    def concurrency(self) -> int | None:
        """The client's chosen concurrency (the most over the runs), or the peers'."""
        values = [r.concurrency or r.in_flight for r in self.runs]
        return max((v for v in values if v is not None), default=None)

    @property
    def server_in_flight(self) -> int:
        return max((r.stats.max_in_flight for r in self.runs if r.stats), default=0)

    @property
    def not_ok(self) -> int:
        return sum(r.not_ok for r in self.runs)

    @property
    def max_paid(self) -> int:
        return max((r.stats.max_charges_per_handle for r in self.runs if r.stats), default=0)

    @property
    def errors(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for run in self.runs:
            total.update(run.errors)
        return total

    def meets_targets(self) -> bool:
        return all(run.meets_targets() for run in self.runs)

    def as_dict(self) -> dict[str, Any]:
        return {
            **_scenario_dict(self.scenario),
            "contender": self.contender,
            "runs": len(self.runs),
            "efficiency": list(self.efficiency),
            "best": list(self.best),
            "share_429": list(self.share_429),
            "elapsed": list(self.elapsed),
            "concurrency": self.concurrency,
            "server_max_in_flight": self.server_in_flight,
            "not_ok": self.not_ok,
            "errors": dict(self.errors),
            "max_paid": self.max_paid,
            "met": self.meets_targets(),
        }


def group_rows(records: Sequence[RunRecord]) -> list[Row]:
    """The records of each (scenario, contender), in the order first run."""
    rows: dict[tuple[Scenario, str], Row] = {}
    for record in records:
        key = (record.scenario, record.cell.contender)
        rows.setdefault(key, Row(record.scenario, record.cell.contender, [])).runs.append(record)
    return list(rows.values())


def _span(values: tuple[float, float], fmt: str, scale: float = 1.0) -> str:
    low, high = values
    if math.isnan(low):
        return "-"
    low_text, high_text = format(low * scale, fmt), format(high * scale, fmt)
    return low_text if low_text == high_text else f"{low_text}-{high_text}"


def print_table(rows: Sequence[Row]) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Bulk jobs under a rate limit, with slow answers", box=box.SIMPLE)
    for column in ("quota", "server", "answer", "reset", "contender"):
        table.add_column(column, no_wrap=True)
    for column in ("runs", "elapsed s", "efficiency", "best", "429s %", "conc", "srv flight"):
        table.add_column(column, justify="right", no_wrap=True)
    for column in ("not ok", "max paid", "targets"):
        table.add_column(column, justify="right", no_wrap=True)
    previous = None
    for row in rows:
        s = row.scenario
        if previous is not None and previous != (s.quota, s.name, s.latency):
            table.add_section()
        previous = (s.quota, s.name, s.latency)
        table.add_row(
            s.quota.describe(),
            s.name,
            s.latency.describe(),
            s.reset,
            row.contender,
            str(len(row.runs)),
            _span(row.elapsed, ".1f"),
            _span(row.efficiency, ".3f"),
            _span(row.best, ".3f"),
            _span(row.share_429, ".2f", 100),
            "-" if row.concurrency is None else str(row.concurrency),
            str(row.server_in_flight),
            str(row.not_ok),
            str(row.max_paid),
            "met" if row.meets_targets() else "missed",
        )
    console = Console(width=220, highlight=False)
    console.print(table)
    console.print(
        "efficiency = (ideal + mean answer time) / elapsed, ideal = (handles - limit) / rate "
        "(the free first window not counted; per phase for halving; handles = those "
        "delivered; the refill rate for bucket-size);\nbest = (ideal + mean) / (perfect + "
        "mean), a perfect client's; min-max over the runs; 429s % of all requests the "
        "server saw; conc = the client's chosen concurrency (the most seen), or the peers' "
        "fixed in-flight count;\nsrv flight = the most requests the server had in flight; "
        f"not ok = lookups not delivered, over all runs;\n{TARGETS_TEXT}."
    )
    for row in rows:
        label = f"  {row.scenario.describe()} / {row.contender}"
        if row.errors:
            errors = ", ".join(f"{k}: {v}" for k, v in row.errors.most_common())
            console.print(f"{label}: failed lookups: {errors}")
        for run in row.runs:
            if run.failure:
                console.print(f"{label} run {run.cell.run + 1}: FAILED {run.failure}")
            elif run.note:
                console.print(f"{label} run {run.cell.run + 1}: {run.note}")


def verdict(rows: Sequence[Row]) -> tuple[bool, str]:
    ours = [row for row in rows if row.contender == "dumpling_async"]
    if not ours:
        return False, "dumpling_async was not run: no verdict."
    misses = []
    for row in ours:
        if row.meets_targets():
            continue
        efficiency, share = row.efficiency, row.share_429
        text = (
            f"{row.scenario.describe()} (efficiency {_span(efficiency, '.3f')}, "
            f"429s {_span(share, '.2f', 100)} %"
        )
        if not row.scenario.relative_target and row.best[0] < TARGET_EFFICIENCY:
            text += f"; no client can reach the target here, best {row.best[0]:.3f}"
        if row.errors:
            text += f"; lost: {dict(row.errors)}"
        misses.append(text + ")")
    if misses:
        return False, (
            f"dumpling_async missed the targets on {len(misses)} of {len(ours)} rows: "
            + "; ".join(misses)
        )
    return True, f"dumpling_async met the targets on all {len(ours)} rows."


def _scenario_dict(s: Scenario) -> dict[str, Any]:
    return {
        "scenario": s.name,
        "algorithm": s.algorithm,
        "backend": s.backend,
        "reset": s.reset,
        "quota": {
            "name": s.quota.name,
            "limit": s.quota.limit,
            "window": s.quota.window,
            "refill": s.quota.refill,
            "handles": s.quota.handles,
        },
        "latency": s.latency.as_dict(),
        "rule_options": dict(s.rule_options),
        "server_options": dict(s.server_options),
        "halving": s.halving,
    }


def _run_dict(r: RunRecord) -> dict[str, Any]:
    stats = r.stats
    return {
        **_scenario_dict(r.scenario),
        "contender": r.cell.contender,
        "run": r.cell.run,
        "seed": r.cell.seed,
        "phase": r.cell.phase,
        "phase_period": r.cell.period,
        "start_phase": r.start_phase,
        "elapsed": None if math.isnan(r.elapsed) else r.elapsed,
        "ideal": r.ideal,
        "perfect": r.perfect,
        "efficiency": r.efficiency,
        "best": r.best,
        "ok": r.ok,
        "not_ok": r.not_ok,
        "errors": r.errors,
        "rate_limit_lost": r.rate_limit_lost,
        "requests": stats.requests if stats else None,
        "rate_limited": stats.rate_limited if stats else None,
        "share_429": r.share_429,
        "statuses": {str(k): v for k, v in stats.statuses.items()} if stats else {},
        "server_max_in_flight": stats.max_in_flight if stats else None,
        "client_concurrency": r.concurrency,
        "peer_in_flight": r.in_flight,
        "max_charges_per_handle": stats.max_charges_per_handle if stats else None,
        "credits_charged": stats.credits_charged if stats else None,
        "client_cpu_seconds": r.client_cpu,
        "cell_seconds": r.cell_seconds,
        "note": r.note,
        "failure": r.failure,
        "met": r.meets_targets(),
    }


def _finite(value: Any) -> Any:
    """*value* with every NaN or infinity as None (JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def write_json(path: Path, records: Sequence[RunRecord], rows: Sequence[Row], meta: Any) -> None:
    """``{"meta": ..., "runs": [one per run], "rows": [one per scenario x contender]}``."""
    document = {
        "meta": {"written": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **meta},
        "runs": [_run_dict(r) for r in records],
        "rows": [row.as_dict() for row in rows],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_finite(document), indent=1, allow_nan=False, default=str)
    path.write_text(text + "\n")
    print(f"raw rows written to {path}")
