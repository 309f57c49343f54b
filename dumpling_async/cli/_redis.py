"""``--redis-url``: one rate limiter and one credit budget for every worker on one key.

Workers started with the same Redis URL and API key share the quota (a
:class:`~dumpling_async.redis.RedisRateLimiter`) and the ``--max-credits`` budget (a
:class:`~dumpling_async.redis.RedisCreditBudget`). Their Redis keys are named after a hash
of the API key; neither the key nor the URL's password is ever printed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit, urlunsplit

import attrs

from .._core.secret import Secret
from ._support import CLIError

if TYPE_CHECKING:
    from ..redis import RedisCreditBudget, RedisRateLimiter

__all__ = [
    "INSTALL_HINT",
    "PING_TIMEOUT",
    "SharedLimits",
    "WorkerBudget",
    "redacted_url",
    "require_redis",
    "shared_limits",
]

INSTALL_HINT: Final = "pip install 'dumpling-async[redis]'"
PING_TIMEOUT: Final = 5.0  # seconds to reach Redis before giving up on the run


def require_redis() -> None:
    """Raise a usage error (exit 2) with the install hint when redis is not importable."""
    try:
        from .. import redis  # noqa: F401
    except ImportError as exc:
        missing = (exc.name or "").partition(".")[0] == "redis"
        detail = "" if missing else f" ({exc})"
        raise CLIError(
            f"--redis-url needs the redis package{detail}; install it with: {INSTALL_HINT}"
        ) from None


def redacted_url(url: str) -> str:
    """*url* with its password, if any, replaced by ``***``."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        user = parts.username or ""
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
    except ValueError:
        return "<the --redis-url>"


class WorkerBudget:
    """The shared budget, counting what *this* worker was charged.

    Reservations and spending go to the shared budget; ``spent`` is this worker's part
    (what the progress and summary show), ``shared`` the budget all workers draw on.
    """

    def __init__(self, shared: RedisCreditBudget) -> None:
        self.shared = shared
        self._spent = 0

    def __repr__(self) -> str:
        return f"WorkerBudget(spent={self._spent}, shared={self.shared!r})"

    @property
    def spent(self) -> int:
        return self._spent

    @property
    def max_credits(self) -> int | None:
        return self.shared.max_credits

    async def reserve(self, cost: int) -> None:
        await self.shared.reserve(cost)

    async def settle(self, cost: int, *, charged: bool) -> None:
        if charged:
            self._spent += cost
        await self.shared.settle(cost, charged=charged)


async def _check_reachable(url: str) -> None:
    import redis.asyncio as aioredis
    from redis.exceptions import RedisError

    shown = redacted_url(url)
    try:
        client = aioredis.Redis.from_url(url, socket_connect_timeout=PING_TIMEOUT)
    except ValueError as exc:
        raise CLIError(f"invalid --redis-url {shown}: {exc}") from None
    try:
        async with asyncio.timeout(PING_TIMEOUT):
            await client.ping()
    except (RedisError, OSError, TimeoutError) as exc:
        reason = str(exc) or type(exc).__name__
        raise CLIError(f"cannot reach Redis at {shown}: {reason}") from None
    finally:
        await client.aclose()


@attrs.frozen
class SharedLimits:
    """The limiter and budget every ``--redis-url`` worker on one key shares."""

    limiter: RedisRateLimiter
    budget: WorkerBudget

    def client_options(self) -> dict[str, Any]:
        return {"rate_limiter": self.limiter, "credit_budget": self.budget}


@contextlib.asynccontextmanager
async def shared_limits(
    url: str | None, key: Secret | None, max_credits: int | None
) -> AsyncIterator[SharedLimits | None]:
    """The Redis-shared limiter and budget (None without *url*), closed on exit."""
    if url is None or key is None:
        yield None
        return
    require_redis()
    from ..redis import RedisCreditBudget, RedisRateLimiter

    await _check_reachable(url)
    async with (
        RedisRateLimiter(url, api_key=key.get()) as limiter,
        RedisCreditBudget(url, api_key=key.get(), max_credits=max_credits) as budget,
    ):
        yield SharedLimits(limiter, WorkerBudget(budget))
