"""A web tier of four uvicorn workers on one API key, one Redis: cache, max_wait, lanes.

    python -m benchmarks.webload [--quick] [--parts 1234] [--workers 4] [--bulk 1000]
                                 [--requests 2000] [--handles 500] [--answer-time 0.5]
                                 [--spread 0.5] [--algorithm fixed]

The web tier is ``examples/fastapi_workers.py`` served by ``uvicorn --factory --workers
4`` (a RedisRateLimiter per worker, and a RedisCache unless ``DUMPLING_SHARED_CACHE=0``);
the fake API runs in its own process and answers in ``AnswerTime(mean=--answer-time,
spread=--spread)`` (uniform 0.25-0.75 s by default) unless said otherwise. Every
server binds 127.0.0.1 only; a throwaway redis-server (on PATH) is started on a free
loopback port for each part that needs one, so no two runs share a cache or a quota.

1. Shared cache. A load generator (aiohttp, ``--concurrency`` 50 at once) sends
   ``--requests`` 2,000 ``GET /profiles/{handle}``, handles drawn (seeded) from a Zipf-like
   popularity over ``--handles`` 500 (weight 1 / rank ** 1.1). Run with the shared cache
   and again without any cache (``DUMPLING_SHARED_CACHE=0``: each worker has only its
   in-process single flight). The fake API reports its charges per handle. Target: with
   the shared cache, no handle is charged twice (the app's TTL, 600 s, outlasts the run).
2. Cache hit latency, in-process: ``--hits`` 2,000 sequential ``get_tiktok_profile`` calls
   for a handle already cached, with a RedisCache and with the in-memory ProfileCache.
   The shared cache's added latency on a hit is the difference. Target: added p99 <= 1 ms.
   A bare redis-py MGET of the same keys, same run, is the round trip alone: the floor.
3. max_wait accuracy, in-process: a client runs ``gather_profiles`` of ``--probe-bulk`` 400
   handles against ``RateLimitRule(40, 2.0, "token_bucket")``; meanwhile ``--probes`` 30
   times, 0.3 s apart, ``get_tiktok_profile(handle, max_wait=0.01)``. When it raises
   ``MaxWaitExceededError``, how long it took to raise and its ``retry_after`` are kept and
   the same handle is asked again at once with ``max_wait=math.inf``; the actual wait is
   from that call until the fake server (in this process) recorded the request. This
   part's server answers at once (answer time 0), so that record is the moment the
   request arrived; the wait the limiter imposed is the actual wait less the same call's
   time when nothing holds it (measured before the bulk job; both are printed). Targets:
   raised in < 10 ms (max); |retry_after - imposed| / imposed <= 20 % (p95). Beside the
   probes, a 1 ms timer measures the event loop's own lateness, the floor of both.
4. Interactive ahead of bulk, across processes: the fake API limits the key to
   ``RateLimitRule(--limit 40, --window 2.0, --algorithm fixed)``; one bulk process (its
   own client and RedisRateLimiter on the same key and Redis as the web tier) runs
   ``gather_profiles`` of ``--bulk`` 1,000 handles; once it is under way the load generator
   sends ``--interactive`` 40 requests to the web tier, one every 0.5 s, each for a new
   handle. The web tier answers 429 when the quota would hold a request past its
   MAX_WAIT (2 s); those are counted, and the latencies are of the 200s. The peer run
   sends the same interactive stream to the idle tier after the bulk job ended.
   Each request's wait before the API is from its send until the API read it (the
   record's ``arrived``): its latency less its own answer time. Targets: that wait's p95
   <= the unit refill time (window / limit, 50 ms), so that each request's latency is
   within the refill plus its answer time (the latencies are printed too; with a spread
   of answer times their p95 is above refill + mean answer even on the idle tier);
   bulk efficiency >= 0.90, where
   efficiency = bulk handles delivered / (units offered - interactive units), units
   offered = limit + (limit / window) * (bulk elapsed - mean answer time) (the first
   window's burst, then the refill until the bulk job's last request could be sent),
   interactive units = interactive 200s sent while the bulk job ran.

``--quick`` runs everything smaller (about a minute).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from dumpling_async.testing import ALGORITHMS

from ._webload_parts import Config, Section, part_hits, part_max_wait
from ._webload_parts_tier import part_cache, part_lanes
from ._webload_procs import HOST

QUICK = {
    "requests": 500,
    "handles": 200,
    "hits": 500,
    "probes": 12,
    "probe_bulk": 200,
    "bulk": 300,
    "interactive": 16,
}


# -- the printed table ---------------------------------------------------------------------


def print_table(sections: Sequence[Section], header: str) -> None:
    heads = ("measure", "value", "peer", "ratio")
    rows = [r for s in sections for r in s.rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(heads)]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    rule = "-" * len(line(heads))
    print(header)
    print(rule)
    print(line(heads))
    for section in sections:
        print(rule)
        print(section.title)
        peer = f"; peer: {section.peer}" if section.peer else ""
        setup = f"{section.setup} (value: {section.value}{peer})"
        print(textwrap.fill(setup, width=100, initial_indent="  ", subsequent_indent="  "))
        for r in section.rows:
            print(line(r))
        for note in section.notes:
            print(
                textwrap.fill(
                    f"note: {note}", width=100, initial_indent="  ", subsequent_indent="    "
                )
            )
        for target, met in section.targets:
            print(f"  target {target}: {'met' if met else 'NOT met'}")
    print(rule)


# -- main ----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    defaults = Config()
    parser.add_argument("--quick", action="store_true", help="a smaller run of everything")
    parser.add_argument("--parts", default=defaults.parts, help="which parts, e.g. 14")
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument(
        "--answer-time",
        type=float,
        default=defaults.answer_time,
        metavar="SECONDS",
        help="the fake API's mean answer time (parts 1, 4)",
    )
    parser.add_argument(
        "--spread",
        type=float,
        default=defaults.spread,
        help="the answer time's spread around its mean (AnswerTime.spread)",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--requests", type=int, help=f"part 1 (default {defaults.requests})")
    parser.add_argument("--handles", type=int, help=f"part 1 (default {defaults.handles})")
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency)
    parser.add_argument("--hits", type=int, help=f"part 2 (default {defaults.hits})")
    parser.add_argument("--probes", type=int, help=f"part 3 (default {defaults.probes})")
    parser.add_argument("--probe-bulk", type=int, help=f"part 3 (default {defaults.probe_bulk})")
    parser.add_argument("--bulk", type=int, help=f"part 4 (default {defaults.bulk})")
    parser.add_argument("--interactive", type=int, help=f"part 4 (default {defaults.interactive})")
    parser.add_argument("--limit", type=int, default=defaults.limit, help="parts 3, 4")
    parser.add_argument("--window", type=float, default=defaults.window, help="parts 3, 4")
    parser.add_argument(
        "--algorithm",
        choices=ALGORITHMS,
        default=defaults.algorithm,
        help="part 4's server algorithm",
    )
    args = parser.parse_args(argv)
    if set(args.parts) - set("1234"):
        parser.error("--parts takes digits 1 to 4")
    if args.answer_time < 0 or args.workers < 1 or args.concurrency < 1:
        parser.error("--answer-time must be >= 0, --workers and --concurrency >= 1")
    if not 0 <= args.spread <= 1:
        parser.error("--spread must be between 0 and 1")
    sizes: dict[str, Any] = dict(QUICK) if args.quick else {}
    for name in ("requests", "handles", "hits", "probes", "probe_bulk", "bulk", "interactive"):
        if getattr(args, name) is not None:
            sizes[name] = getattr(args, name)
    if any(v < 1 for v in sizes.values()):
        parser.error("sizes must be >= 1")
    return replace(
        defaults,
        parts=args.parts,
        workers=args.workers,
        answer_time=args.answer_time,
        spread=args.spread,
        seed=args.seed,
        concurrency=args.concurrency,
        limit=args.limit,
        window=args.window,
        algorithm=args.algorithm,
        **sizes,
    )


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_args(argv)
    started = time.monotonic()
    runs = {"1": part_cache, "2": part_hits, "3": part_max_wait, "4": part_lanes}
    sections = [runs[p](cfg) for p in "1234" if p in cfg.parts]
    header = (
        f"benchmarks.webload: examples/fastapi_workers.py under uvicorn, fake API and Redis "
        f"on {HOST}; {time.monotonic() - started:.0f} s in all"
    )
    print_table(sections, header)
    return 0 if all(met for s in sections for _, met in s.targets) else 1


if __name__ == "__main__":
    sys.exit(main())
