"""The commands that need no key: ``fake-server`` (serve the offline fake API until
SIGINT/SIGTERM) and ``demo`` (the bundled sample handles through a bulk run against the
in-process fake server). ``add_demo_commands`` attaches them to the CLI group.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import importlib.resources
import sys
from typing import TYPE_CHECKING, Any, Final, cast

import click

from .._results import ProfileResult
from ._bulk_report import print_demo_story, print_summary
from ._bulk_run import BulkJob, execute_bulk
from ._log import configure_logging, log_options
from ._progress import progress_mode
from ._signals import signal_handlers
from ._simulated import SIMULATED_LIMIT, simulated_rule
from ._support import (
    EXIT_FAILED,
    EXIT_OK,
    SIMULATED_KEY,
    CLIError,
    Connection,
    quiet_option,
    run_loop,
    stderr_console,
)

if TYPE_CHECKING:  # imported when needed: aiohttp.web is slow to import
    from ..testing import FakeDumplingServer, RateLimitRule

__all__ = ["SAMPLE_RESOURCE", "add_demo_commands", "parse_rate_limit"]

SAMPLE_RESOURCE: Final = "sample_handles.txt"


def parse_rate_limit(value: str | None) -> RateLimitRule | None:
    """``fake-server --rate-limit``: LIMIT/WINDOW[:ALGORITHM], or None for 'none'."""
    if value is None or value.lower() == "none":
        return None
    text, _, algorithm = value.partition(":")
    algorithm = algorithm.strip().replace("-", "_") or "fixed"
    from ..testing import ALGORITHMS as choices
    from ..testing import RateLimitRule

    try:
        limit_text, window_text = text.split("/", 1)
        limit = int(limit_text)
        window = float(window_text.strip().removesuffix("s"))
    except ValueError:
        raise click.BadParameter(
            f"{value!r}: expected LIMIT/WINDOW[:ALGORITHM], e.g. 50/1 or 100/60:sliding",
            param_hint="--rate-limit",
        ) from None
    if algorithm not in choices:
        raise click.BadParameter(
            f"algorithm must be one of {', '.join(choices)}", param_hint="--rate-limit"
        )
    if limit < 1 or not window > 0:
        raise click.BadParameter("LIMIT must be >= 1 and WINDOW > 0", param_hint="--rate-limit")
    return RateLimitRule(limit, window, cast(Any, algorithm))


@click.command("fake-server")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8787, show_default=True)
@click.option(
    "--rate-limit",
    default="50/1",
    show_default=True,
    help="LIMIT/WINDOW[:fixed|sliding|sliding_counter|token_bucket|gcra] per key, or 'none'.",
)
@click.option("--credits", type=click.IntRange(0), default=None, help="Credits before 403.")
@click.option(
    "--fault-rate",
    type=click.FloatRange(0.0, 1.0),
    default=0.0,
    show_default=True,
    help="Share of requests that fail with a random fault (5xx, drops, bad bodies).",
)
@click.option("--latency", type=click.FloatRange(0.0), default=0.0, help="Seconds per answer.")
def fake_server(
    host: str,
    port: int,
    rate_limit: str | None,
    credits: int | None,
    fault_rate: float,
    latency: float,
) -> None:
    """Serve the fake DumplingAI API until SIGINT or SIGTERM; prints its URL on stdout.

    Any bearer key is accepted; handles starting with 'unknown' answer 404.
    """
    from ..testing import FakeDumplingServer, FaultPlan

    rule = parse_rate_limit(rate_limit)
    faults = FaultPlan(rate=fault_rate, slow_seconds=1.0) if fault_rate else None
    console = stderr_console()

    async def serve() -> FakeDumplingServer:
        server = FakeDumplingServer(
            rate_limit=rule,
            credits=credits,
            faults=faults,
            latency=latency,
            host=host,
            port=port,
        )
        try:
            await server.start()
        except OSError as exc:
            raise CLIError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        stop = asyncio.Event()
        with signal_handlers(lambda _name: stop.set()):
            click.echo(server.url)
            sys.stdout.flush()
            shown = f"{rule.limit}/{rule.window:g}s {rule.algorithm}" if rule else "none"
            console.print(
                f"fake DumplingAI API at {server.url} (rate limit {shown}, credits "
                f"{'unlimited' if credits is None else credits}); any key works. Try:\n"
                f"  DUMPLINGAI_API_KEY=test dumpling-async profiles handles.txt "
                f"--base-url {server.url}\nCtrl-C stops it.",
                markup=False,
            )
            try:
                await stop.wait()
            finally:
                await server.close()
        return server

    server = run_loop(serve())
    console.print(
        f"stopped: {server.requests} requests, {sum(server.charged.values())} profiles "
        f"charged, {server.rate_limited} answered 429",
        markup=False,
    )


@click.command()
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    default="demo-profiles.jsonl",
    show_default=True,
    help="Where the results go (overwritten).",
)
@click.option(
    "--limit", type=click.IntRange(1), default=None, help="Only the first N sample handles."
)
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(1, 256),
    default=None,
    help="Lookups in flight at most (default: sized by the client).",
)
@quiet_option
@log_options
def demo(
    output: str,
    limit: int | None,
    concurrency: int | None,
    quiet: bool,
    verbose: int,
    log_format: str,
) -> None:
    """Look up ~300 bundled sample handles against an in-process fake server.

    No key and no network: the fake server allows 50 requests per second (sliding
    window) and the client paces itself from the X-RateLimit headers (told the window
    up front, so no 429 is spent learning it). The sample has unknown handles (404),
    repeats (looked up once) and a few invalid lines on purpose.
    """
    configure_logging(verbose, log_format)
    console = stderr_console()
    top: list[tuple[int, str, str]] = []  # a heap of the most followed profiles
    resource = importlib.resources.files("dumpling_async").joinpath(SAMPLE_RESOURCE)
    with importlib.resources.as_file(resource) as sample:
        job = BulkJob(
            input=str(sample),
            output=output,
            fmt="jsonl",
            column=None,
            concurrency=concurrency,
            max_credits=None,
            retry_errors=False,
            resume=False,
            progress=progress_mode(quiet, console, to_stdout=False),
            limit=limit,
            observe=functools.partial(_keep_top, top),
            # The demo knows its fake server's window, so the limiter need not spend a 429
            # learning it. The 10% margin is the one the limiter adds to a window it learns:
            # it logs send times, the server arrival times, so an exact guess lets the first
            # request after a full window arrive a few milliseconds early.
            rate_window=simulated_rule().window * 1.1,
        )
        conn = Connection(SIMULATED_KEY, None, True)
        if not quiet:
            console.print(
                f"demo: {SIMULATED_LIMIT[0]} requests per {SIMULATED_LIMIT[1]:g}s "
                f"({SIMULATED_LIMIT[2]} window) on an in-process fake server; "
                f"writing {output}",
                markup=False,
            )
        stats = execute_bulk(conn, job, console)
    if not quiet:
        print_summary(console, stats)
        print_demo_story(console, stats, top)
    if stats.interrupted is not None:
        sys.exit(stats.exit_code())
    expected = {"ok", "ProfileNotFoundError", "InvalidHandleError"}
    unexpected = set(stats.outcomes) - expected
    sys.exit(EXIT_FAILED if unexpected or stats.aborted else EXIT_OK)


def _keep_top(top: list[tuple[int, str, str]], result: ProfileResult) -> None:
    """Keep the five most followed profiles seen so far in the heap *top*."""
    profile = result.profile
    if profile is None or profile.stats is None or profile.stats.follower_count is None:
        return
    nickname = profile.user.nickname if profile.user and profile.user.nickname else ""
    item = (profile.stats.follower_count, result.handle, nickname)
    if len(top) < 5:
        heapq.heappush(top, item)
    else:
        heapq.heappushpop(top, item)


def add_demo_commands(group: click.Group) -> None:
    """Attach ``fake-server`` and ``demo`` to the CLI *group*."""
    group.add_command(fake_server)
    group.add_command(demo)
