"""The ``dumpling-async`` command line: the click group and the ``main`` entry point.

Commands: ``profiles`` (bulk lookups with resume, progress and a summary) and ``profile``
(one lookup), here; ``fake-server`` (serve the offline fake API) and ``demo`` (a bundled
sample against the in-process fake server, no key needed), in ``_demo``; the listings
``videos``, ``comments``, ``followers``, ``following``, ``search`` plus ``transcript``, in
``_listing_commands``.

Exit status: 0 all answered ok, 1 some handles failed (or were not attempted), 2 usage,
configuration or input error, 3 aborted by an account-level error (401 invalid key,
403 out of credits), 130/143 interrupted by SIGINT/SIGTERM.

The bulk run behind ``profiles`` and ``demo`` is in ``_bulk_run`` (its input in ``_input``,
its output in ``_output``, ``_shard`` for ``--shard`` and ``_redis`` for ``--redis-url``),
its live progress in ``_progress`` and its summary in ``_bulk_report``; logging is in
``_log``, the shared options and the connection in ``_support``, the fake server of
``--simulate`` (on its own thread) in ``_simulated``.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Literal, cast

import click
import orjson
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from .._core.inputs import normalize_handle
from .._errors import InvalidHandleError, InvalidInputError
from .._models import TikTokProfile
from .._version import __version__
from ._bulk_report import print_report
from ._bulk_run import BulkJob, execute_bulk
from ._database import export as export_database
from ._demo import add_demo_commands
from ._files import DATABASE_SUFFIXES, OutputError, default_format, default_profiles_format
from ._journal import Journal
from ._listing_commands import LISTINGS, add_listing_commands
from ._listing_database import export_listing, listings_in
from ._log import configure_logging, log_options
from ._progress import progress_mode
from ._redis import INSTALL_HINT, require_redis
from ._shard import Shard, parse_shard
from ._support import (
    EXIT_OK,
    EXIT_SIGINT,
    CLIError,
    connection_options,
    database_output_options,
    fail,
    output_options,
    parse_age,
    quiet_option,
    resolve_connection,
    run_one,
    stderr_console,
)

__all__ = ["cli", "main"]

ProfilesFormat = Literal["jsonl", "csv", "sqlite"]

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
@database_output_options
@click.option(
    "--column",
    default=None,
    help="The CSV column holding handles (default 'handle'; implies CSV input).",
)
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(1, 256),
    default=None,
    help="Lookups in flight at most (default: sized from the rate limit and answer times).",
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
@click.option(
    "--retry-unanswered",
    is_flag=True,
    help="When resuming, look up again handles a killed run sent and never saw answered "
    "(they may have been charged: without this flag they are kept as 'Unanswered').",
)
@click.option(
    "--max-age",
    metavar="AGE",
    callback=parse_age,
    default=None,
    help="With a database OUTPUT: look up again handles whose stored outcome is older than "
    "AGE (e.g. 7d, 12h, 30m, 90s); newer ones are kept and not bought again.",
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
@quiet_option
@log_options
@connection_options
@click.pass_context
def profiles(
    ctx: click.Context,
    input_path: str,
    output: str | None,
    fmt: str | None,
    column: str | None,
    concurrency: int | None,
    max_credits: int | None,
    retry_errors: bool,
    retry_unanswered: bool,
    max_age: float | None,
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
    away. Every distinct handle ends up exactly once in OUTPUT. Each handle is recorded
    just before it is sent, so a rerun after a kill keeps what was in flight as
    'Unanswered' (maybe charged) instead of buying it again (--retry-unanswered buys it).
    An OUTPUT ending in .db is a database kept across runs and lists: a handle in it is
    not bought again (--max-age: unless older); `dumpling-async export` writes it out.

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
    out_path = _output_path(input_path, output)
    job_format = _profiles_format(fmt, out_path, max_age)
    console = stderr_console()
    job = BulkJob(
        input=input_path,
        output=out_path,
        fmt=job_format,
        column=_input_column(input_path, column),
        concurrency=concurrency,
        max_credits=max_credits,
        retry_errors=retry_errors,
        retry_unanswered=retry_unanswered,
        max_age=max_age,
        journal=Journal() if out_path is not None else None,
        resume=not overwrite,
        progress=progress_mode(quiet, console, to_stdout=out_path is None),
        shard=shard,
        redis_url=redis_url,
    )
    stats = execute_bulk(conn, job, console)
    print_report(console, stats, quiet=quiet)
    ctx.exit(stats.exit_code())


@cli.command()
@click.argument("database", type=click.Path(exists=True, dir_okay=False))
@output_options
@click.option(
    "--listing",
    nargs=2,
    type=(click.Choice([listing.command for listing in LISTINGS]), str),
    default=None,
    metavar="COMMAND SUBJECT",
    help="Write the items of one listing (as `videos HANDLE -o results.db` stored them) "
    "instead of the profiles, in the lines that command writes to a file.",
)
def export(
    database: str, output: str | None, fmt: str | None, listing: tuple[str, str] | None
) -> None:
    """Write what a database OUTPUT holds (-o results.db) as JSONL or CSV: the profiles,
    one line per handle in the format `profiles` writes (index is null: a database keeps
    a handle across runs and lists, not its place in one input), or one listing's items.

    \b
      dumpling-async export results.db -o profiles.jsonl
      dumpling-async export results.db -o profiles.csv
      dumpling-async export results.db --listing videos charlidamelio -o videos.csv
    """
    target = None if output in (None, "-") else output
    if target is not None and target.lower().endswith(DATABASE_SUFFIXES):
        raise click.BadParameter("export writes JSONL or CSV, not a database", param_hint="-o")
    export_format = cast(Literal["jsonl", "csv"], fmt or default_format(target))
    console = stderr_console()
    try:
        if listing is None:
            count, what = export_database(database, target, export_format), "handles"
            if count == 0 and (held := listings_in(database)):
                console.print(f"{database} holds listings: {held}", markup=False)
                console.print("export one with --listing COMMAND SUBJECT", markup=False)
        else:
            chosen = next(each for each in LISTINGS if each.command == listing[0])
            try:
                subject = chosen.normalize(listing[1])
            except InvalidInputError as exc:
                raise click.BadParameter(str(exc), param_hint="--listing") from None
            named = (chosen.command, subject)
            count = export_listing(database, named, chosen.shape, target, export_format)
            what = "items"
    except OutputError as exc:
        raise CLIError(str(exc)) from None
    if target is not None:
        console.print(f"{count} {what} written to {target}", markup=False)


def _profiles_format(
    fmt: str | None, out_path: str | None, max_age: float | None
) -> ProfilesFormat:
    """The output format, checked against what goes with it."""
    job_format = cast(ProfilesFormat, fmt or default_profiles_format(out_path))
    if job_format == "sqlite" and out_path is None:
        raise click.BadParameter("a database output needs a file: -o results.db", param_hint="-o")
    if max_age is not None and job_format != "sqlite":
        raise click.BadParameter(
            "--max-age needs a database OUTPUT (-o results.db): a file keeps no fetch times",
            param_hint="--max-age",
        )
    return job_format


def _input_column(input_path: str, column: str | None) -> str | None:
    """The CSV column holding the handles: --column, or 'handle' for an INPUT file ending in
    .csv; None for a plain handle list."""
    if column is None and input_path != "-" and input_path.lower().endswith(".csv"):
        return "handle"
    return column


def _output_path(input_path: str, output: str | None) -> str | None:
    """The OUTPUT file (None: stdout); a usage error when it is the INPUT file."""
    out_path = None if output in (None, "-") else output
    if out_path is not None and input_path != "-" and _same_file(input_path, out_path):
        raise click.BadParameter("OUTPUT must not be the INPUT file", param_hint="-o")
    return out_path


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


add_demo_commands(cli)
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
