"""Benchmarks for dumpling_async, each runnable as ``python -m benchmarks.NAME``.

* ``benchmarks.ratelimit``: bulk jobs against rate-limited servers that answer in 0 to
  3 s (the fake server with each algorithm: fixed, sliding log, sliding window counter,
  token bucket, GCRA; with and without reset headers; windows aligned to Unix time, a
  lockout, a small refill, a floored Retry-After, a limit that halves mid-job; and an API
  built on the ``limits`` package) vs a naive gather and a static aiolimiter, several
  cells at once.
* ``benchmarks.distributed``: four processes on one key, a shared Redis limiter vs local
  ones (``--latency`` for a slow server).
* ``benchmarks.overhead``: client CPU per request and throughput vs bare aiohttp, a naive
  gather and httpx (asyncio and uvloop, bulk and sequential, with and without hooks);
  where a lookup's CPU goes; the command line vs the library.
* ``benchmarks.memory``: peak RSS of ``iter_profiles`` over 10k vs 100k handles.

The server always runs in a separate process (``benchmarks._server``) on 127.0.0.1, so
its CPU never counts against the client being measured.
"""
