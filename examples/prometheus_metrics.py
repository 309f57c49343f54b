"""Prometheus metrics for a bulk job, from the client's event hooks.

Every request, answer, retry, limiter wait, pause and credit the client reports becomes
a ``prometheus-client`` counter or histogram; a real service would expose them with
``prometheus_client.start_http_server(9100)`` for Prometheus to scrape. Here the job
runs against the built-in fake server (rate-limited, with some injected faults) and the
metrics are printed at the end. Needs ``pip install prometheus-client``.

    python examples/prometheus_metrics.py
"""

from __future__ import annotations

import asyncio
import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from dumpling_async import (
    AsyncDumplingClient,
    ClientHooks,
    CreditsEvent,
    PauseEvent,
    ResponseEvent,
    RetryEvent,
    RetryPolicy,
    ThrottleEvent,
)
from dumpling_async.testing import FakeDumplingServer, FaultPlan, RateLimitRule


class PrometheusHooks(ClientHooks):
    """The client's events as Prometheus metrics, labelled by endpoint."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.responses = Counter(
            "dumpling_responses",
            "Attempts by endpoint and HTTP status (0: no answer).",
            ["endpoint", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "dumpling_request_seconds",
            "Time from sending a request to its answer.",
            ["endpoint"],
            registry=registry,
        )
        self.retries = Counter(
            "dumpling_retries", "Retries scheduled.", ["endpoint", "error"], registry=registry
        )
        self.throttled = Counter(
            "dumpling_throttle_seconds",
            "Seconds requests waited for the rate limiter.",
            ["endpoint"],
            registry=registry,
        )
        self.pauses = Counter(
            "dumpling_pauses", "429 and 503 answers.", ["endpoint", "status"], registry=registry
        )
        self.credits = Counter(
            "dumpling_credits",
            "Credits charged (confirmed) or maybe charged (no answer came).",
            ["endpoint", "charge"],
            registry=registry,
        )
        self.remaining = Gauge(
            "dumpling_ratelimit_remaining",
            "X-RateLimit-Remaining of the last answer that carried it.",
            registry=registry,
        )

    def on_response(self, event: ResponseEvent) -> None:
        self.responses.labels(event.endpoint, str(event.status)).inc()
        if event.status:
            self.latency.labels(event.endpoint).observe(event.elapsed)
        if event.remaining is not None:
            self.remaining.set(event.remaining)

    def on_retry(self, event: RetryEvent) -> None:
        self.retries.labels(event.endpoint, type(event.error).__name__).inc()

    def on_throttle(self, event: ThrottleEvent) -> None:
        self.throttled.labels(event.endpoint).inc(event.seconds)

    def on_pause(self, event: PauseEvent) -> None:
        self.pauses.labels(event.endpoint, str(event.status)).inc()

    def on_credits(self, event: CreditsEvent) -> None:
        charge = "confirmed" if event.confirmed else "maybe"
        self.credits.labels(event.endpoint, charge).inc(event.credits)


async def main() -> None:
    registry = CollectorRegistry()
    hooks = PrometheusHooks(registry)
    handles = [f"creator{i}" for i in range(60)]
    faults = FaultPlan(rate=0.1, kinds=("500", "502", "503"), seed=7)
    async with (
        FakeDumplingServer(rate_limit=RateLimitRule(30, 0.5), faults=faults) as server,
        AsyncDumplingClient(
            os.environ.get("DUMPLINGAI_API_KEY", "sk-example"),
            base_url=server.url,
            retry=RetryPolicy(backoff_base=0.01, backoff_max=0.05),
            hooks=hooks,
        ) as client,
    ):
        results = await client.gather_profiles(handles)
    found = sum(r.error is None for r in results)
    print(f"{found}/{len(handles)} profiles, {client.credits_spent} credits\n")
    for line in generate_latest(registry).decode().splitlines():
        if line.startswith("dumpling_") and "_bucket" not in line and "_created" not in line:
            print(line)


if __name__ == "__main__":
    asyncio.run(main())
