"""The money invariants under seeded chaos (``python -m benchmarks.invariants`` is the
long soak of the same): timeouts, drops, cancellations, breaking inputs, failing
callbacks and Redis restarts, against a server that charges what its clients left."""

from __future__ import annotations

from pathlib import Path

import pytest
from _redis import RedisProcess

from benchmarks.invariants import chaos_run


@pytest.mark.parametrize("seed", range(40))
async def test_money_invariants_hold(seed: int) -> None:
    """Charged <= budget, confirmed <= charged <= confirmed + uncertain, one result each."""
    report = await chaos_run(seed)
    assert report.violations == (), report


@pytest.mark.parametrize("seed", range(1000, 1012))
async def test_money_invariants_hold_across_a_redis_restart(seed: int, tmp_path: Path) -> None:
    """The same with the budget in Redis, which restarts (state lost) mid-run."""
    redis = RedisProcess(tmp_path)
    try:
        report = await chaos_run(seed, redis_url=redis.url, restart=redis.restart)
    finally:
        redis.stop()
    assert report.violations == (), report
    assert report.redis
