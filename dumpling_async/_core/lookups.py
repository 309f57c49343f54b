"""Single-object requests (a profile, a video, a transcript): the cache first, then
single flight, then the pipeline. Single calls and bulk jobs both come through here."""

from __future__ import annotations

import functools
from collections.abc import Awaitable
from typing import Any

from .cache import ProfileCache
from .converter import parse_model
from .endpoints import Call
from .flights import Flights
from .pipeline import Pipeline, StopCheck

__all__ = ["Lookups"]


class Lookups:
    """The way one client fetches single objects."""

    def __init__(self, pipeline: Pipeline, flights: Flights, cache: ProfileCache | None) -> None:
        self.pipeline = pipeline
        self.flights = flights
        self.cache = cache

    def __repr__(self) -> str:
        return f"Lookups({self.flights!r}, cache={self.cache!r})"

    def get(self, call: Call) -> Awaitable[Any]:
        """The call's value; concurrent calls for the same thing share one request."""
        return self.flights.share(call.key, functools.partial(self.fetch, call))

    async def fetch(
        self, call: Call, stop: StopCheck | None = None, at_send: StopCheck | None = None
    ) -> Any:
        """The call's value, from the cache or one request (no single flight: a bulk job
        registers its own task as the flight)."""
        cache = self.cache if call.endpoint.cacheable else None
        if cache is not None and (cached := cache.get(call.subject)) is not None:
            return cached
        endpoint = call.endpoint
        parse = functools.partial(parse_model, endpoint.model, requires=endpoint.requires)
        value = await self.pipeline.call(call, parse, stop=stop, at_send=at_send)
        if cache is not None:
            cache.put(call.subject, value)
        return value
