"""Benchmarks for dumpling_async, each runnable as ``python -m benchmarks.NAME``.

* ``benchmarks.ratelimit``: bulk jobs against rate-limited fake servers (fixed, sliding,
  token bucket, a limit that halves mid-job) vs a naive gather and a static aiolimiter.
* ``benchmarks.overhead``: client CPU per request and throughput vs bare aiohttp and httpx.
* ``benchmarks.memory``: peak RSS of ``iter_profiles`` over 10k vs 100k handles.

The fake server always runs in a separate process (``benchmarks._server``) on 127.0.0.1,
so its CPU never counts against the client being measured.
"""
