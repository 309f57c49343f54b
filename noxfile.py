"""The suite on every Python version the package supports: ``nox -s tests``.

Versions that are not installed are skipped (``error_on_missing_interpreters`` is off).
Arguments after ``--`` go to pytest: ``nox -s tests -- -x tests/test_client.py``.
"""

from __future__ import annotations

import nox

PYTHONS = ["3.11", "3.12", "3.13"]  # keep in step with pyproject.toml's classifiers

nox.options.sessions = ["tests"]
nox.options.error_on_missing_interpreters = False
nox.options.reuse_existing_virtualenvs = True


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Install the package with its cli, redis and dev extras and run the test suite."""
    session.install(".[cli,redis,dev]")
    session.run("sh", "scripts/ensure-redis-server", external=True)  # the Redis tests
    session.run("python", "-m", "pytest", "-q", *session.posargs)
