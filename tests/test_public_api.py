"""The public surface: names, exports and the package's import-time behaviour."""

from __future__ import annotations

import subprocess
import sys

import dumpling_async


def test_all_matches_public_names() -> None:
    """`__all__` lists exactly the package's public (non-underscore, non-module) names."""
    public = {
        name
        for name, value in vars(dumpling_async).items()
        if not name.startswith("_") and type(value).__name__ != "module"
    }
    assert set(dumpling_async.__all__) - {"__version__"} == public


def test_contract_names_importable() -> None:
    """The names the design promises are importable from the package root."""
    code = (
        "import dumpling_async as d; print(d.AsyncDumplingClient, d.TikTokProfile, "
        "d.ProfileResult, d.RetryPolicy, d.DumplingError, d.ConfigurationError, "
        "d.APIStatusError, d.UpstreamError, d.APITimeoutError, d.InvalidHandleError, "
        "d.ProfileNotFoundError, d.AuthenticationError, d.InsufficientCreditsError, "
        "d.RateLimitError, d.InvalidResponseError, d.BudgetExceededError, d.BatchAbortedError)\n"
        "from dumpling_async.testing import FakeDumplingServer"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_error_hierarchy() -> None:
    """Errors subclass what the design says, including ValueError where promised."""
    d = dumpling_async
    assert issubclass(d.ConfigurationError, d.DumplingError)
    assert issubclass(d.ConfigurationError, ValueError)
    assert issubclass(d.InvalidHandleError, ValueError)
    assert issubclass(d.APITimeoutError, d.APIConnectionError)
    for cls in (
        d.BadRequestError,
        d.AuthenticationError,
        d.InsufficientCreditsError,
        d.ProfileNotFoundError,
        d.RateLimitError,
        d.ServerError,
        d.UpstreamError,
    ):
        assert issubclass(cls, d.APIStatusError)


def test_import_configures_nothing() -> None:
    """Importing the package neither configures structlog nor adds output handlers."""
    code = (
        "import logging, structlog\n"
        "before = structlog.get_config()\n"
        "import dumpling_async\n"
        "assert structlog.get_config() == before\n"
        "handlers = logging.getLogger('dumpling_async').handlers\n"
        "assert all(isinstance(h, logging.NullHandler) for h in handlers), handlers\n"
        "assert not logging.getLogger().handlers\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_version() -> None:
    """The package reports its version."""
    assert dumpling_async.__version__.count(".") == 2
