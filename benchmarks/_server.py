"""Run ``FakeDumplingServer`` in a separate process and ask it what it saw.

The server gets its own interpreter (multiprocessing, ``spawn``) so that its CPU time
and event-loop stalls never mix with the client being measured. The parent talks to it
over a ``multiprocessing`` Pipe::

    with ServerProcess(RateLimitRule(40, 0.5)) as server:
        url = server.url                  # http://127.0.0.1:PORT
        ...                               # run a client against url
        stats = server.stats()            # what the server saw and charged
        server.set_rate_limit(20)         # change the limit mid-run

A limit change can also be scheduled inside the server process, so that it happens at
a precise point of the job whatever the client is doing: ``halve_after`` (seconds after
the first request) or ``halve_after_charged`` (once that many unique handles have been
charged). ``options`` are more ``FakeDumplingServer`` keyword arguments (such as
``reset_headers``, or ``latency=AnswerTime(...)``). ``backend="limits-fixed"``
(``-moving``, ``-sliding_counter``) runs the API built on the ``limits`` package instead
(``benchmarks._limits_server``; of the options it takes ``latency`` and
``latency_seed``). Only 127.0.0.1 is ever bound.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any, Protocol, Self

from dumpling_async.testing import FakeDumplingServer, RateLimitRule

__all__ = ["LimitChange", "ServerProcess", "ServerStats"]

HOST = "127.0.0.1"
_POLL_SECONDS = 0.002  # how often the child checks its scheduled limit change
_START_TIMEOUT = 30.0


@dataclass(frozen=True)
class LimitChange:
    """One change of the server's limit: when (``time.monotonic()``, a system-wide clock
    on Linux, so comparable with the parent's) and from what to what."""

    at: float
    old: int
    new: int
    requests_before: int  # requests the server had seen when the change happened


@dataclass(frozen=True)
class ServerStats:
    """The server's own record of a run."""

    requests: int  # every request it answered, 429s included
    rate_limited: int  # 429 answers
    credits_charged: int  # 10 per profile delivered
    unique_charged: int  # distinct handles charged at least once
    max_charges_per_handle: int  # 1 means nothing was paid twice
    statuses: dict[int, int] = field(default_factory=dict)
    max_in_flight: int = 0
    first_request_at: float | None = None  # time.monotonic() of the first request
    limit_changes: tuple[LimitChange, ...] = ()
    first_request_wall: float | None = None  # time.time() of it (the limits server only)
    charged: dict[str, int] = field(default_factory=dict)  # charges by handle
    arrived: dict[str, float] = field(default_factory=dict)  # a handle's first 200 read at

    @property
    def rate_limited_share(self) -> float:
        """429s as a fraction of all requests the server saw."""
        return self.rate_limited / self.requests if self.requests else 0.0


# -- the child process ---------------------------------------------------------------------


class _Served(Protocol):
    """What the child reads of the server it runs (FakeDumplingServer, LimitsServer)."""

    rate_limited: int
    max_in_flight: int

    @property
    def rate_limit(self) -> RateLimitRule | None: ...
    @property
    def url(self) -> str: ...
    @property
    def records(self) -> list[Any]: ...
    @property
    def charged(self) -> Counter[str]: ...
    @property
    def requests(self) -> int: ...
    @property
    def credits_charged(self) -> int: ...
    def statuses(self) -> Counter[int]: ...
    def set_rate_limit(self, limit: int) -> None: ...
    async def start(self) -> None: ...
    async def close(self) -> None: ...


@dataclass(frozen=True)
class _Spec:
    """What the child process serves (picklable)."""

    rule: RateLimitRule | None
    port: int
    halve_after: float | None
    halve_after_charged: int | None
    options: Mapping[str, Any]
    backend: str

    def server(self) -> _Served:
        if self.backend == "fake":
            options = dict(self.options)
            return FakeDumplingServer(rate_limit=self.rule, host=HOST, port=self.port, **options)
        if self.rule is None or not self.backend.startswith("limits-"):
            raise ValueError(f"unknown backend {self.backend!r} (or no rule for limits)")
        from ._limits_server import LimitsServer

        unknown = set(self.options) - {"latency", "latency_seed"}
        if unknown:
            raise ValueError(f"the limits server takes only latency options: {sorted(unknown)}")
        strategy = self.backend.removeprefix("limits-")
        return LimitsServer(
            self.rule,
            strategy,
            host=HOST,
            port=self.port,
            latency=self.options.get("latency"),
            latency_seed=self.options.get("latency_seed"),
        )


def _first_answered(records: list[Any]) -> dict[str, float]:
    """When each handle's first request answered 200 was read (before its answer time)."""
    arrived: dict[str, float] = {}
    for record in records:
        handle = getattr(record, "handle", None)  # (the limits server records none)
        if record.status == 200 and handle is not None and record.arrived is not None:
            arrived.setdefault(handle, record.arrived)
    return arrived


class _Child:
    def __init__(self, conn: Connection, server: _Served, spec: _Spec) -> None:
        self.conn = conn
        self.server = server
        self.halve_after = spec.halve_after
        self.halve_after_charged = spec.halve_after_charged
        self.changes: list[LimitChange] = []
        self.done = asyncio.Event()

    def set_limit(self, limit: int) -> None:
        rule = self.server.rate_limit
        if rule is None:
            raise ValueError("the server has no rate limit to change")
        self.changes.append(LimitChange(time.monotonic(), rule.limit, limit, self.server.requests))
        self.server.set_rate_limit(limit)

    def stats(self) -> ServerStats:
        server = self.server
        records = server.records
        return ServerStats(
            requests=server.requests,
            rate_limited=server.rate_limited,
            credits_charged=server.credits_charged,
            unique_charged=len(server.charged),
            max_charges_per_handle=max(server.charged.values(), default=0),
            statuses=dict(server.statuses()),
            max_in_flight=server.max_in_flight,
            first_request_at=records[0].at if records else None,
            limit_changes=tuple(self.changes),
            first_request_wall=getattr(server, "first_request_wall", None),
            charged=dict(server.charged),
            arrived=_first_answered(records),
        )

    def reset(self) -> None:
        server = self.server
        server.records.clear()
        server.charged.clear()
        server.rate_limited = 0
        server.max_in_flight = 0
        self.changes.clear()

    def on_command(self) -> None:
        try:
            while self.conn.poll():
                command, *args = self.conn.recv()
                reply: Any = None
                try:
                    if command == "stats":
                        reply = self.stats()
                    elif command == "set_rate_limit":
                        self.set_limit(int(args[0]))
                    elif command == "reset":
                        self.reset()
                    elif command == "stop":
                        self.done.set()
                    else:
                        raise ValueError(f"unknown command {command!r}")
                except Exception as exc:
                    reply = exc
                self.conn.send(
                    ("ok", reply) if not isinstance(reply, Exception) else ("error", repr(reply))
                )
        except (EOFError, OSError):
            self.done.set()  # the parent went away

    async def schedule(self) -> None:
        """Apply ``halve_after`` / ``halve_after_charged`` once their moment comes."""
        server = self.server
        rule = server.rate_limit
        if rule is None or (self.halve_after is None and self.halve_after_charged is None):
            return
        by_charges, by_seconds = self.halve_after_charged, self.halve_after
        while not self.done.is_set():
            await asyncio.sleep(_POLL_SECONDS)
            if by_charges is not None:
                if len(server.charged) >= by_charges:
                    break
            elif (
                by_seconds is not None
                and server.records
                and time.monotonic() - server.records[0].at >= by_seconds
            ):
                break
        else:
            return
        self.set_limit(max(1, rule.limit // 2))


async def _serve(conn: Connection, spec: _Spec) -> None:
    try:
        server = spec.server()
        await server.start()
    except (OSError, ValueError, TypeError) as exc:
        conn.send(("error", f"cannot start the server: {exc}"))
        return
    child = _Child(conn, server, spec)
    loop = asyncio.get_running_loop()
    loop.add_reader(conn.fileno(), child.on_command)
    scheduler = asyncio.ensure_future(child.schedule())
    conn.send(("ok", server.url))
    try:
        await child.done.wait()
    finally:
        loop.remove_reader(conn.fileno())
        scheduler.cancel()
        await server.close()


def _child_main(conn: Connection, spec: _Spec) -> None:
    try:
        asyncio.run(_serve(conn, spec))
    except KeyboardInterrupt:
        pass
    finally:
        conn.close()


# -- the parent's handle -------------------------------------------------------------------


class ServerProcess:
    """A ``FakeDumplingServer`` in its own process on 127.0.0.1.

    *rule* is the rate limit (None: unlimited); *port* 0 picks a free one.
    ``halve_after`` halves the limit that many seconds after the first request;
    ``halve_after_charged`` halves it once that many unique handles were charged.
    *options* go to ``FakeDumplingServer``; *backend* ``"limits-<strategy>"`` serves the
    ``limits``-based API instead (``benchmarks._limits_server.STRATEGIES``), to which
    only the options ``latency`` (an ``AnswerTime``) and ``latency_seed`` are passed.
    """

    def __init__(
        self,
        rule: RateLimitRule | None = None,
        *,
        port: int = 0,
        halve_after: float | None = None,
        halve_after_charged: int | None = None,
        options: Mapping[str, Any] | None = None,
        backend: str = "fake",
    ) -> None:
        if (halve_after is not None or halve_after_charged is not None) and rule is None:
            raise ValueError("halving needs a rate limit rule")
        self.rule = rule
        self.port = port
        self.halve_after = halve_after
        self.halve_after_charged = halve_after_charged
        self._spec = _Spec(
            rule, port, halve_after, halve_after_charged, dict(options or {}), backend
        )
        self._conn: Connection | None = None
        self._process: multiprocessing.process.BaseProcess | None = None
        self._url: str | None = None

    def start(self) -> str:
        """Start the process; return the base URL once the server accepts requests."""
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        process = ctx.Process(
            target=_child_main,
            args=(child, self._spec),
            name="fake-dumpling-server",
            daemon=True,
        )
        process.start()
        child.close()
        self._conn, self._process = parent, process
        if not parent.poll(_START_TIMEOUT):
            self.stop()
            raise RuntimeError("the fake server process did not start in time")
        status, payload = parent.recv()
        if status != "ok":
            self.stop()
            raise RuntimeError(str(payload))
        self._url = str(payload)
        return self._url

    @property
    def url(self) -> str:
        """The base URL (``http://127.0.0.1:PORT``)."""
        if self._url is None:
            raise RuntimeError("start the server first")
        return self._url

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def _call(self, *message: object) -> Any:
        if self._conn is None:
            raise RuntimeError("the server is not running")
        self._conn.send(message)
        status, payload = self._conn.recv()
        if status != "ok":
            raise RuntimeError(f"server command {message[0]!r} failed: {payload}")
        return payload

    def stats(self) -> ServerStats:
        """What the server has seen and charged so far."""
        stats: ServerStats = self._call("stats")
        return stats

    def set_rate_limit(self, limit: int) -> None:
        """Change the limit now (``FakeDumplingServer.set_rate_limit``)."""
        self._call("set_rate_limit", limit)

    def reset(self) -> None:
        """Forget the requests and charges recorded so far (quota state is kept)."""
        self._call("reset")

    def stop(self) -> None:
        """Stop the server and wait for its process to exit. Idempotent."""
        conn, process = self._conn, self._process
        self._conn = self._process = None
        if conn is not None:
            try:
                conn.send(("stop",))
                if conn.poll(5.0):
                    conn.recv()
            except (EOFError, OSError, BrokenPipeError):
                pass
            conn.close()
        if process is not None:
            process.join(5.0)
            if process.is_alive():
                process.terminate()
                process.join(5.0)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
