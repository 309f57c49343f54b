"""The ``dumpling-async`` command line.

Commands: ``profiles`` (bulk lookups with resume, progress and a summary), ``profile``
(one lookup), ``fake-server`` (serve the offline fake API), ``demo`` (a bundled sample
against the in-process fake server, no key needed), and the listings ``videos``,
``comments``, ``followers``, ``following``, ``search`` plus ``transcript`` (in
``cli._listing_commands``).

Exit status: 0 all answered ok, 1 some handles failed (or were not attempted), 2 usage,
configuration or input error, 3 aborted by an account-level error (401 invalid key,
403 out of credits), 130/143 interrupted by SIGINT/SIGTERM.

This module holds the click commands and the ``main`` entry point; the bulk run is in
``_bulk_run`` (with ``_shard`` for ``--shard`` and ``_redis`` for
``--redis-url``), its progress and summary in ``_progress``, and logging, connection
options and the in-process fake server in ``_support``.
"""

from __future__ import annotations

import asyncio
import heapq
import importlib.resources
import os
import signal
import sys
import time
from typing import Final, cast

import click
import orjson
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from .._core.inputs import normalize_handle
from .._errors import (
    InvalidHandleError,
)
from .._models import TikTokProfile
from .._results import ProfileResult
from .._version import __version__
from ._bulk_run import BulkJob, execute_bulk
from ._files import OutputFormat
from ._listing_commands import add_listing_commands
from ._progress import (
    final_code,
    print_demo_story,
    print_stop_reason,
    print_summary,
    progress_mode,
)
from ._redis import INSTALL_HINT, require_redis
from ._shard import Shard, parse_shard
from ._support import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_SIGINT,
    SIMULATED_KEY,
    SIMULATED_LIMIT,
    CLIError,
    Connection,
    configure_logging,
    connection_options,
    fail,
    log_options,
    parse_rate_limit,
    resolve_connection,
    run_one,
    simulated_rule,
    stderr_console,
)

__all__ = ["cli", "main"]

SAMPLE_RESOURCE: Final = "sample_handles.txt"


# -- the click commands --------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="dumpling-async")
@connection_options
@click.pass_context
def cli(
    ctx: click.Context,
    api_key_file: str | None,
    api_key: str | None,
    base_url: str | None,
    simulate: bool | None,
) -> None:
    """Look up TikTok profiles, videos, comments, followers and transcripts through the
    DumplingAI API.

    The API key comes from DUMPLINGAI_API_KEY (or DUMPLING_API_KEY), --api-key-file, or
    --api-key; --simulate runs against an in-process fake server instead.
    """
    ctx.obj = {
        "api_key_file": api_key_file,
        "api_key": api_key,
        "base_url": base_url,
        "simulate": simulate,
    }


@cli.command()
@click.argument(
    "input_path", metavar="INPUT", type=click.Path(exists=True, dir_okay=False, allow_dash=True)
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, allow_dash=True),
    default=None,
    help="Output file (default stdout). Resumed when it exists.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "csv"]),
    default=None,
    help="Output format (default: csv for an OUTPUT ending in .csv, else jsonl).",
)
@click.option(
    "--column",
    default=None,
    help="The CSV column holding handles (default 'handle'; implies CSV input).",
)
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(1, 256),
    default=16,
    show_default=True,
    help="Lookups in flight at once.",
)
@click.option(
    "--max-credits",
    type=click.IntRange(0),
    default=None,
    help="Stop before spending more than this many credits (10 per profile).",
)
@click.option(
    "--retry-errors",
    is_flag=True,
    help="When resuming, look up again handles that failed with a transient error or 404.",
)
@click.option("--overwrite", is_flag=True, help="Start OUTPUT afresh instead of resuming it.")
@click.option(
    "--shard",
    metavar="K/N",
    callback=parse_shard,
    default=None,
    help="Look up only share K of N of the input (1 <= K <= N), chosen by a stable hash of "
    "each handle, so N workers over one INPUT split it without overlap; give each its own "
    "-o file. Invalid lines go to shard 1.",
)
@click.option(
    "--redis-url",
    metavar="URL",
    envvar="DUMPLINGAI_REDIS_URL",
    show_envvar=True,
    default=None,
    help="Share the rate limit and the --max-credits budget with every worker using this "
    "Redis (e.g. redis://127.0.0.1:6379/0) and the same API key. Needs "
    f"{INSTALL_HINT}.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress and no summary.")
@log_options
@connection_options
@click.pass_context
def profiles(
    ctx: click.Context,
    input_path: str,
    output: str | None,
    fmt: str | None,
    column: str | None,
    concurrency: int,
    max_credits: int | None,
    retry_errors: bool,
    overwrite: bool,
    shard: Shard | None,
    redis_url: str | None,
    quiet: bool,
    verbose: int,
    log_format: str,
    api_key_file: str | None,
    api_key: str | None,
    base_url: str | None,
    simulate: bool | None,
) -> None:
    """Look up every handle of INPUT and write one result per handle to OUTPUT.

    INPUT holds one handle or profile URL per line (blank lines and # comments are
    skipped), or is a CSV file (.csv, or --column) with a 'handle' column; '-' reads
    stdin. Results are written as they arrive, one line each (JSONL: handle, input,
    index, line, ok, then profile or error). When OUTPUT exists it is resumed: handles
    it already answers are not sent again, and a torn last line (a killed run) is cut
    away. Every distinct handle ends up exactly once in OUTPUT.

    \b
    Several workers (processes or machines) on one INPUT:
      dumpling-async profiles handles.txt --shard 1/3 -o part1.jsonl --redis-url URL
      dumpling-async profiles handles.txt --shard 2/3 -o part2.jsonl --redis-url URL
      dumpling-async profiles handles.txt --shard 3/3 -o part3.jsonl --redis-url URL

    --shard K/N splits the distinct handles between the workers (each in exactly one
    part; a rerun of a worker resumes its own part). --redis-url makes them share one
    rate limiter, so together they stay within the key's quota, and one credit budget:
    --max-credits then caps what all of them spend together, counted in Redis (the
    count outlives the run; it expires after 7 days unused). The API key itself never
    reaches Redis: its keys are named after a hash of it.

    Exit status: 0 all ok, 1 some failed or not attempted, 2 usage or input error,
    3 aborted (invalid key or out of credits).
    """
    configure_logging(verbose, log_format)
    conn = resolve_connection(ctx, api_key_file, api_key, base_url, simulate)
    if redis_url is not None:
        require_redis()
    if column is None and input_path != "-" and input_path.lower().endswith(".csv"):
        column = "handle"
    out_path = None if output in (None, "-") else output
    if out_path is not None and input_path != "-" and _same_file(input_path, out_path):
        raise click.BadParameter("OUTPUT must not be the INPUT file", param_hint="-o")
    if fmt is None:
        fmt = "csv" if out_path is not None and out_path.lower().endswith(".csv") else "jsonl"
    console = stderr_console()
    job = BulkJob(
        input=input_path,
        output=out_path,
        fmt=cast(OutputFormat, fmt),
        column=column,
        concurrency=concurrency,
        max_credits=max_credits,
        retry_errors=retry_errors,
        resume=not overwrite,
        progress=progress_mode(quiet, console, to_stdout=out_path is None),
        shard=shard,
        redis_url=redis_url,
    )
    stats = execute_bulk(conn, job, console)
    if quiet:
        print_stop_reason(console, stats)
    else:
        print_summary(console, stats)
    ctx.exit(final_code(stats))


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


@cli.command()
@click.argument("handle")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON instead of a table.")
@log_options
@connection_options
@click.pass_context
def profile(
    ctx: click.Context,
    handle: str,
    as_json: bool,
    verbose: int,
    log_format: str,
    api_key_file: str | None,
    api_key: str | None,
    base_url: str | None,
    simulate: bool | None,
) -> None:
    """Look up one TikTok profile by HANDLE or profile URL.

    Exit status: 0 found, 1 not found or failed, 2 usage error, 3 invalid key or out of
    credits.
    """
    configure_logging(verbose, log_format)
    try:
        normalize_handle(handle)
    except InvalidHandleError as exc:
        raise click.BadParameter(str(exc), param_hint="HANDLE") from None
    conn = resolve_connection(ctx, api_key_file, api_key, base_url, simulate)

    result = run_one(
        ctx, conn, lambda client: client.get_tiktok_profile(handle), not_found="not found"
    )
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(result.raw, option=orjson.OPT_INDENT_2) + b"\n")
        sys.stdout.flush()
        return
    Console(highlight=False).print(_profile_panel(result))


def _profile_panel(result: TikTokProfile) -> Panel:
    user, stats = result.user, result.stats
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()

    def row(label: str, value: object) -> None:
        if value is None or value == "":
            return
        if isinstance(value, bool):
            value = "yes" if value else "no"
        elif isinstance(value, int):
            value = f"{value:,}"
        table.add_row(label, str(value))

    if user is not None:
        row("nickname", user.nickname)
        row("verified", user.verified)
        row("private", user.private_account)
        row("region", user.region)
        row("language", user.language)
        row("bio", user.signature)
        row("link", user.bio_link.link if user.bio_link else None)
        if user.create_time:
            row("joined", time.strftime("%Y-%m-%d", time.gmtime(user.create_time)))
        row("id", user.id)
    if stats is not None:
        row("followers", stats.follower_count)
        row("following", stats.following_count)
        row("likes", stats.heart_count)
        row("videos", stats.video_count)
    title = f"@{user.unique_id}" if user is not None and user.unique_id else "profile"
    return Panel(table, title=title, title_align="left", expand=False)


@cli.command("fake-server")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8787, show_default=True)
@click.option(
    "--rate-limit",
    default="50/1",
    show_default=True,
    help="LIMIT/WINDOW[:fixed|sliding|token_bucket] per key, or 'none'.",
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
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
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

    server = asyncio.run(serve())
    console.print(
        f"stopped: {server.requests} requests, {sum(server.charged.values())} profiles "
        f"charged, {server.rate_limited} answered 429",
        markup=False,
    )


@cli.command()
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
@click.option("-c", "--concurrency", type=click.IntRange(1, 256), default=16, show_default=True)
@click.option("-q", "--quiet", is_flag=True, help="No progress and no summary.")
@log_options
def demo(
    output: str,
    limit: int | None,
    concurrency: int,
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
    top: list[tuple[int, str, str]] = []

    def observe(result: ProfileResult) -> None:
        profile = result.profile
        if profile is None or profile.stats is None or profile.stats.follower_count is None:
            return
        nickname = profile.user.nickname if profile.user and profile.user.nickname else ""
        item = (profile.stats.follower_count, result.handle, nickname)
        if len(top) < 5:
            heapq.heappush(top, item)
        else:
            heapq.heappushpop(top, item)

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
            observe=observe,
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
        sys.exit(final_code(stats))
    expected = {"ok", "ProfileNotFoundError", "InvalidHandleError"}
    unexpected = set(stats.outcomes) - expected
    sys.exit(EXIT_FAILED if unexpected or stats.aborted else EXIT_OK)


add_listing_commands(cli)


def main(argv: list[str] | None = None) -> None:
    """The console script: run the CLI, turning known failures into a message and status."""
    try:
        code = cli.main(args=argv, prog_name="dumpling-async", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        stderr_console().print("aborted", markup=False)
        sys.exit(EXIT_SIGINT)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except CLIError as exc:
        fail(exc.message, exc.code)
    except KeyboardInterrupt:
        sys.exit(EXIT_SIGINT)
    # Without standalone mode click returns ctx.exit()'s status (or the command's None).
    sys.exit(code if isinstance(code, int) else EXIT_OK)
