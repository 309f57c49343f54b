"""Shared pieces of the ``dumpling-async`` commands: exit statuses, stderr messages, the
click options several commands take (connection: key, base URL, ``--simulate``; output;
``--quiet``; logging's are in ``_log``), and running one API call (``run_one``) or a
whole bulk or listing run (``run_job``) with the exit statuses and messages every command
shares.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final, NoReturn, TypeVar

import attrs
import click
from rich.console import Console
from rich.text import Text

from .._client import AsyncDumplingClient
from .._core.config import resolve_key
from .._core.endpoints import CreditCosts
from .._core.secret import Secret
from .._errors import (
    AuthenticationError,
    ConfigurationError,
    DumplingError,
    InsufficientCreditsError,
    NotFoundError,
)
from ._files import OutputError
from ._signals import Interruptible
from ._simulated import simulated_server

__all__ = [
    "COST_NAMES",
    "EXIT_ABORTED",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_SIGINT",
    "EXIT_SIGTERM",
    "EXIT_USAGE",
    "SIMULATED_KEY",
    "CLIError",
    "Connection",
    "connection_options",
    "database_output_options",
    "fail",
    "make_client",
    "output_options",
    "parse_age",
    "quiet_option",
    "resolve_api_key",
    "resolve_connection",
    "run_job",
    "run_loop",
    "run_one",
    "stderr_console",
    "warn",
]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_ABORTED: Final = 3
EXIT_SIGINT: Final = 130
EXIT_SIGTERM: Final = 143

SIMULATED_KEY: Final = "simulated-key"  # any key works against the fake server
T = TypeVar("T")
COST_NAMES: Final = tuple(attrs.fields_dict(CreditCosts))
_COSTS_META: Final = "dumpling_async.credit_costs"
_PROXY_META: Final = "dumpling_async.proxy"


class CLIError(Exception):
    """A failure the CLI reports as one message (no traceback) and an exit status."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    stderr_console().print(Text.assemble(("error: ", "bold red"), message))
    sys.exit(code)


def warn(message: str) -> None:
    stderr_console().print(f"[yellow]warning:[/] {message}")


# -- connection options ------------------------------------------------------------------


@attrs.frozen
class Connection:
    """Where and how to connect: the key (None: from the environment), the base URL, or
    the in-process fake server."""

    api_key: str | None = attrs.field(repr=False)  # never shown: reprs end up in logs
    base_url: str | None
    simulate: bool
    credit_costs: CreditCosts | None = None
    proxy: str | None = attrs.field(default=None, repr=False)  # may carry credentials


def connection_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--api-key-file",
            type=click.Path(exists=True, dir_okay=False),
            default=None,
            help="Read the API key from this file (its first line).",
        ),
        click.option(
            "--api-key",
            default=None,
            help="The API key (visible in the process list; prefer DUMPLINGAI_API_KEY or "
            "--api-key-file).",
        ),
        click.option(
            "--base-url",
            default=None,
            help="API base URL (default https://app.dumplingai.com, or DUMPLINGAI_API_URL).",
        ),
        click.option(
            "--simulate",
            is_flag=True,
            default=None,
            help="Run against an in-process fake server (50 requests/s); no key needed.",
        ),
        click.option(
            "--proxy",
            metavar="URL",
            default=None,
            expose_value=False,
            callback=_keep_proxy,
            help="Send requests through this HTTP proxy (default: HTTPS_PROXY / HTTP_PROXY "
            "from the environment, NO_PROXY honoured). --simulate never uses a proxy.",
        ),
        click.option(
            "--credit-cost",
            metavar="NAME=N",
            multiple=True,
            envvar="DUMPLINGAI_CREDIT_COSTS",
            show_envvar=True,
            expose_value=False,
            callback=_parse_credit_costs,
            help="What your plan charges per request to an endpoint, for --max-credits and "
            "the credits shown (default 10 each; only the profile's 10 is documented). "
            f"NAME is one of {', '.join(COST_NAMES)}; repeat or separate with commas, "
            "e.g. --credit-cost transcript=5,video=7.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _keep_proxy(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    # Kept in ctx.meta like the costs: the group's --proxy and a command's are one.
    if value:
        ctx.meta[_PROXY_META] = value


def _parse_credit_costs(ctx: click.Context, param: click.Parameter, values: Any) -> None:
    # Kept in ctx.meta, which the group and its commands share, so the option works in
    # either place without every command taking a parameter for it.
    prices: dict[str, int] = {}
    for value in values or ():
        for part in str(value).replace(",", " ").split():
            name, _, number = part.partition("=")
            name = name.strip().replace("-", "_")
            if name not in COST_NAMES or not number.strip().isdigit():
                raise click.BadParameter(
                    f"{part!r}: expected NAME=N with NAME one of {', '.join(COST_NAMES)}",
                    param=param,
                )
            prices[name] = int(number)
    if prices:
        base = ctx.meta.get(_COSTS_META) or CreditCosts()
        ctx.meta[_COSTS_META] = attrs.evolve(base, **prices)


def resolve_connection(
    ctx: click.Context,
    api_key_file: str | None,
    api_key: str | None,
    base_url: str | None,
    simulate: bool | None,
) -> Connection:
    """Merge a command's connection options over the group's."""
    group: dict[str, Any] = ctx.find_root().obj or {}
    api_key_file = api_key_file or group.get("api_key_file")
    api_key = api_key or group.get("api_key")
    base_url = base_url or group.get("base_url")
    simulate = bool(simulate or group.get("simulate"))
    if api_key is not None and api_key_file is not None:
        raise click.UsageError("pass --api-key or --api-key-file, not both")
    if api_key is not None:
        warn(
            "--api-key shows the key in the process list and shell history; prefer "
            "DUMPLINGAI_API_KEY or --api-key-file"
        )
    if api_key_file is not None:
        api_key = _read_key_file(api_key_file)
    costs = ctx.meta.get(_COSTS_META)
    if simulate:
        return Connection(SIMULATED_KEY, None, True, costs)
    return Connection(api_key, base_url, False, costs, ctx.meta.get(_PROXY_META))


def _read_key_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            key = handle.readline(4096).strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise CLIError(f"cannot read the API key file {path}: {exc}") from None
    if not key:
        raise CLIError(f"the API key file {path} is empty")
    return key


def _config_error(exc: ConfigurationError) -> CLIError:
    message = str(exc)
    if message.startswith("no DumplingAI API key"):
        message = (
            "no DumplingAI API key: set DUMPLINGAI_API_KEY (or DUMPLING_API_KEY), pass "
            "--api-key-file PATH, or try --simulate"
        )
    return CLIError(message)


def resolve_api_key(conn: Connection) -> Secret:
    """The key the client will use (given, or from the environment), still wrapped."""
    try:
        return resolve_key(conn.api_key)
    except ConfigurationError as exc:
        raise _config_error(exc) from None


def make_client(
    conn: Connection, base_url: str | None = None, **options: Any
) -> AsyncDumplingClient:
    try:
        if conn.credit_costs is not None:
            options.setdefault("credit_costs", conn.credit_costs)
        if conn.simulate:
            options["trust_env"] = False  # the in-process server is never behind a proxy
        else:
            options["proxy"] = conn.proxy
        return AsyncDumplingClient(conn.api_key, base_url=base_url or conn.base_url, **options)
    except ConfigurationError as exc:
        raise _config_error(exc) from None


def _output_options(formats: tuple[str, ...], default: str) -> Callable[..., Any]:
    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        func = click.option(
            "--format",
            "fmt",
            type=click.Choice(formats),
            default=None,
            help=f"Output format (default: {default}).",
        )(func)
        func = click.option(
            "-o",
            "--output",
            type=click.Path(dir_okay=False, allow_dash=True),
            default=None,
            help="Output file (default stdout). Resumed when it exists.",
        )(func)
        return func

    return decorate


# ``-o/--output`` and ``--format``: to a file (``export``), or to a file or a database.
output_options: Final = _output_options(
    ("jsonl", "csv"), "csv for an OUTPUT ending in .csv, else jsonl"
)
database_output_options: Final = _output_options(
    ("jsonl", "csv", "sqlite"),
    "sqlite for an OUTPUT ending in .db, .sqlite or .sqlite3, csv for .csv, else jsonl",
)


_AGE_UNITS: Final = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_age(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """``--max-age``'s callback: a number and a unit (s, m, h, d, w), in seconds."""
    if value is None:
        return None
    text = value.strip().lower()
    unit = _AGE_UNITS.get(text[-1:]) if text else None
    try:
        number = float(text[:-1]) if unit is not None else float("nan")
    except ValueError:
        number = float("nan")
    if unit is None or not 0 <= number < 1e9:  # nan fails too
        raise click.BadParameter(
            f"{value!r}: expected a number and a unit (s, m, h, d, w), e.g. 7d or 12h", ctx, param
        )
    return number * unit


quiet_option: Final = click.option(
    "-q", "--quiet", is_flag=True, help="No progress and no summary."
)


def run_one(
    ctx: click.Context,
    conn: Connection,
    call: Callable[[AsyncDumplingClient], Awaitable[T]],
    *,
    not_found: str,
) -> T:
    """Run one API call on a client of *conn* (and its fake server, if simulated), with the
    exit codes every single-call command shares: 1 for *not_found* (a 404) or a failed
    request, 3 for an invalid key or no credits, 130 on Ctrl-C."""

    async def run() -> T:
        async with simulated_server(conn.simulate) as server:
            url = server.url if server is not None else None
            async with make_client(conn, base_url=url, max_concurrency=1) as client:
                return await call(client)

    try:
        return run_loop(run())
    except KeyboardInterrupt:
        ctx.exit(EXIT_SIGINT)
    except NotFoundError as exc:
        raise CLIError(f"{not_found}: {exc}", EXIT_FAILED) from None
    except (AuthenticationError, InsufficientCreditsError) as exc:
        raise CLIError(str(exc), EXIT_ABORTED) from None
    except DumplingError as exc:
        raise CLIError(f"{type(exc).__name__}: {exc}", EXIT_FAILED) from None


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run *main* on uvloop when the ``speed`` extra installed it (set
    ``DUMPLINGAI_EVENT_LOOP=asyncio`` to keep asyncio's own loop), else on asyncio's. Only
    the command line chooses a loop: the library never installs one."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if os.environ.get("DUMPLINGAI_EVENT_LOOP", "").strip().lower() != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def run_job(main: Coroutine[Any, Any, None], stats: Interruptible) -> None:
    """Run a bulk or listing run's event loop: the signal that ended it goes into
    ``stats.interrupted``; output and I/O failures become a CLIError."""
    try:
        run_loop(main)
    except KeyboardInterrupt:
        stats.interrupted = stats.interrupted or "SIGINT"
    except asyncio.CancelledError:
        stats.interrupted = stats.interrupted or "SIGTERM"
    except OutputError as exc:
        raise CLIError(str(exc)) from None
    except BrokenPipeError:
        # The reader of stdout went away (e.g. `| head`): stop quietly.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise CLIError("output closed by the reader", EXIT_FAILED) from None
    except OSError as exc:
        raise CLIError(f"I/O error: {exc}") from None
