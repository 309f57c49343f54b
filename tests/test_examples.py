"""Every example runs against the fake server with no key and exits 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.py"))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(example: Path, tmp_path: Path) -> None:
    """The example exits 0 and prints something, offline and without an API key."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DUMPLINGAI_API_KEY", "DUMPLING_API_KEY", "DUMPLINGAI_API_URL"}
    }
    done = subprocess.run(
        [sys.executable, str(example)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip()
    assert "Traceback" not in done.stderr


def test_every_example_is_listed() -> None:
    """The examples the README promises are all there."""
    names = {p.name for p in EXAMPLES}
    assert {
        "quickstart.py",
        "bulk_to_jsonl.py",
        "aiohttp_backend.py",
        "fastapi_backend.py",
        "fastapi_workers.py",
        "shared_limiter.py",
        "redis_workers.py",
        "video_transcripts.py",
        "prometheus_metrics.py",
    } <= names
