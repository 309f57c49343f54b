"""The listing commands ``videos``, ``comments``, ``followers``, ``following`` and
``search`` (a paged listing streamed to OUTPUT one item per line, resumable; the run is in
``_listing_run``, the output and its state file in ``_listing_files``), and
``transcript`` (one video's subtitles as text, WebVTT or JSON).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, Final, cast

import click
import orjson

from .._core.inputs import check_language, check_query, normalize_handle, normalize_video_url
from .._errors import (
    InvalidInputError,
)
from .._models import TikTokTranscript
from ._files import default_profiles_format, write_atomic
from ._listing_items import COMMENT_SHAPE, USER_SHAPE, VIDEO_SHAPE, ListingFormat
from ._listing_run import (
    Listing,
    ListingJob,
    PagerArgs,
    execute_listing,
    print_outcome,
    print_summary,
)
from ._log import configure_logging, log_options
from ._progress import progress_mode
from ._support import (
    EXIT_FAILED,
    CLIError,
    connection_options,
    database_output_options,
    quiet_option,
    resolve_connection,
    run_one,
    stderr_console,
)

__all__ = ["LISTINGS", "add_listing_commands"]

LISTINGS: Final = (
    Listing(
        "videos",
        "HANDLE",
        "Write the videos of HANDLE (a handle or profile URL), newest first.",
        normalize_handle,
        lambda c, s, a: c.iter_profile_videos(s, start_cursor=a.start_cursor, trim=a.trim),
        VIDEO_SHAPE,
        has_page_size=False,
    ),
    Listing(
        "comments",
        "URL",
        "Write the top-level comments of the video at URL.",
        normalize_video_url,
        lambda c, s, a: c.iter_video_comments(
            s, start_cursor=a.start_cursor, page_size=a.page_size
        ),
        COMMENT_SHAPE,
    ),
    Listing(
        "followers",
        "HANDLE",
        "Write the accounts that follow HANDLE, most recent first.",
        normalize_handle,
        lambda c, s, a: c.iter_followers(s, start_cursor=a.start_cursor, page_size=a.page_size),
        USER_SHAPE,
    ),
    Listing(
        "following",
        "HANDLE",
        "Write the accounts HANDLE follows, most recent first.",
        normalize_handle,
        lambda c, s, a: c.iter_following(s, start_cursor=a.start_cursor, page_size=a.page_size),
        USER_SHAPE,
    ),
    Listing(
        "search",
        "QUERY",
        "Write the accounts matching QUERY, most relevant first.",
        check_query,
        lambda c, s, a: c.search_users(s, start_cursor=a.start_cursor, page_size=a.page_size),
        USER_SHAPE,
    ),
)

_HELP_TAIL = """
One line per item, flushed as written: JSONL holds the API's item JSON as is, CSV a
fixed set of columns (the first is the item's id). An existing OUTPUT is resumed: the
state file OUTPUT.cursor.json says where the listing continues, items OUTPUT already
holds are not written again, and a finished listing is not fetched again. --limit counts
the items in OUTPUT, those of earlier runs included. Each page costs one request's
credits. An OUTPUT ending in .db, .sqlite or .sqlite3 (or --format sqlite) is a database
instead: a page's items commit with the cursor after them, many listings and the
profiles share one file, and `dumpling-async export --listing` writes one out.

Exit status: 0 done (listing complete or --limit reached), 1 a page failed (rerun to
resume) or not found, 2 usage or input error, 3 invalid key or out of credits.
"""


# -- the commands --------------------------------------------------------------------------


def _listing_command(listing: Listing) -> click.Command:
    """The click command that writes *listing* to OUTPUT."""

    @click.pass_context
    def command(
        ctx: click.Context,
        subject: str,
        output: str | None,
        fmt: str | None,
        limit: int | None,
        start_cursor: str | None,
        max_credits: int | None,
        overwrite: bool,
        quiet: bool,
        verbose: int,
        log_format: str,
        api_key_file: str | None,
        api_key: str | None,
        base_url: str | None,
        simulate: bool | None,
        page_size: int | None = None,
        trim: bool = False,
    ) -> None:
        configure_logging(verbose, log_format)
        try:
            canonical = listing.normalize(subject)
        except InvalidInputError as exc:
            raise click.BadParameter(str(exc), param_hint=listing.metavar) from None
        conn = resolve_connection(ctx, api_key_file, api_key, base_url, simulate)
        out_path = None if output in (None, "-") else output
        console = stderr_console()
        job = ListingJob(
            listing=listing,
            subject=canonical,
            output=out_path,
            fmt=_listing_format(fmt, out_path),
            limit=limit,
            args=PagerArgs(start_cursor, page_size, trim),
            max_credits=max_credits,
            resume=not overwrite,
            progress=progress_mode(quiet, console, to_stdout=out_path is None),
        )
        stats = execute_listing(conn, job, console)
        if stats.note is not None:
            if not quiet:
                console.print(stats.note, markup=False)
        elif not quiet:
            print_summary(console, stats)
        print_outcome(console, stats)
        ctx.exit(stats.exit_code())

    return click.command(
        listing.command, help=listing.summary + "\n" + _HELP_TAIL, short_help=listing.summary
    )(_listing_options(listing)(command))


def _listing_format(fmt: str | None, out_path: str | None) -> ListingFormat:
    """The output format, checked against the output."""
    chosen = cast(ListingFormat, fmt or default_profiles_format(out_path))
    if chosen == "sqlite" and out_path is None:
        raise click.BadParameter("a database output needs a file: -o results.db", param_hint="-o")
    return chosen


def _listing_options(listing: Listing) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The argument and options of the listing command *listing*, as one decorator."""
    sized = click.option(
        "--page-size",
        metavar="N",
        type=click.IntRange(1),
        default=None,
        help="Items per page to ask for (default: the API's).",
    )
    trimmed = click.option(
        "--trim", is_flag=True, help="Ask the API to leave out each video's heavy 'video' object."
    )
    options: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
        click.argument("subject", metavar=listing.metavar),
        database_output_options,
        click.option(
            "--limit",
            metavar="N",
            type=click.IntRange(1),
            default=None,
            help="Stop once OUTPUT holds N items.",
        ),
        sized if listing.has_page_size else trimmed,
        click.option(
            "--start-cursor",
            metavar="CURSOR",
            default=None,
            help="Start at this cursor (one a failed run printed) instead of the first page "
            "or the saved one.",
        ),
        click.option(
            "--max-credits",
            metavar="N",
            type=click.IntRange(0),
            default=None,
            help="Stop before spending more than this many credits (10 per page by default).",
        ),
        click.option("--overwrite", is_flag=True, help="Start OUTPUT afresh instead of resuming."),
        quiet_option,
        log_options,
        connection_options,
    ]

    def decorate_all(func: Callable[..., Any]) -> Callable[..., Any]:
        for decorate in reversed(options):
            func = decorate(func)
        return func

    return decorate_all


@click.command()
@click.argument("url")
@click.option("--language", default="en", show_default=True, help="Preferred language (ISO 639-1).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "vtt", "json"]),
    default="text",
    show_default=True,
    help="text: the spoken text, one cue per line; vtt: the WebVTT as sent; json: the cues "
    "with their times.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, allow_dash=True),
    default=None,
    help="Write here (replaced) instead of stdout.",
)
@log_options
@connection_options
@click.pass_context
def transcript(
    ctx: click.Context,
    url: str,
    language: str,
    fmt: str,
    output: str | None,
    verbose: int,
    log_format: str,
    api_key_file: str | None,
    api_key: str | None,
    base_url: str | None,
    simulate: bool | None,
) -> None:
    """Print the transcript (subtitles) of the video at URL.

    Exit status: 0 printed, 1 the video has no subtitles (or was not found, or the request
    failed), 2 usage or input error, 3 invalid key or out of credits.
    """
    configure_logging(verbose, log_format)
    try:
        canonical = normalize_video_url(url)
    except InvalidInputError as exc:
        raise click.BadParameter(str(exc), param_hint="URL") from None
    try:
        language = check_language(language)
    except InvalidInputError as exc:
        raise click.BadParameter(str(exc), param_hint="--language") from None
    conn = resolve_connection(ctx, api_key_file, api_key, base_url, simulate)

    result = run_one(
        ctx,
        conn,
        lambda client: client.get_tiktok_transcript(canonical, preferred_language=language),
        not_found="no subtitles",
    )
    if not result.transcript:
        raise CLIError(
            f"no subtitles: the API sent an empty transcript for {canonical}", EXIT_FAILED
        )
    data = _transcript_bytes(result, fmt)
    if output in (None, "-"):
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    assert output is not None
    try:
        write_atomic(output, data)
    except OSError as exc:
        raise CLIError(f"cannot write {output}: {exc.strerror or exc}") from None


def _transcript_bytes(result: TikTokTranscript, fmt: str) -> bytes:
    if fmt == "vtt":
        return (result.transcript or "").encode()
    if fmt == "json":
        document = {
            "id": result.id,
            "language": result.language,
            "original_url": result.original_url,
            "cues": [{"start": c.start, "end": c.end, "text": c.text} for c in result.cues],
        }
        return orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"
    text = result.text
    return (text + "\n").encode() if text else b""


def add_listing_commands(group: click.Group) -> None:
    """Attach the listing commands and ``transcript`` to the CLI *group*."""
    for listing in LISTINGS:
        group.add_command(_listing_command(listing))
    group.add_command(transcript)
