"""Single-object requests (a profile, a video, a transcript): the cache first, then
single flight (in this process, then across processes when the cache is shared), then
the pipeline. Single calls and bulk jobs both come through here."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from .._errors import MaxWaitExceededError
from .cache import ProfileCache
from .converter import parse_model
from .endpoints import Call
from .flights import Flights
from .pipeline import Pipeline, StopCheck
from .shared import SharedCache, SharedFlights

__all__ = ["Lookups"]

T = TypeVar("T")


class Lookups:
    """The way one client fetches single objects."""

    def __init__(
        self, pipeline: Pipeline, flights: Flights, cache: ProfileCache | SharedCache | None
    ) -> None:
        self.pipeline = pipeline
        self.flights = flights
        self.cache = cache if isinstance(cache, ProfileCache) else None
        self.shared = SharedFlights(cache) if isinstance(cache, SharedCache) else None

    def __repr__(self) -> str:
        return f"Lookups({self.flights!r}, cache={self.cache or self.shared!r})"

    async def get(self, call: Call) -> Any:
        """The call's value; concurrent calls for the same thing share one request. A
        caller that joined a lookup refused for another caller's ``max_wait`` asks again
        with its own (once: then the refusal is its own too)."""
        fetch = functools.partial(self.fetch, call)
        try:
            return await self.flights.share(call.key, fetch)
        except MaxWaitExceededError as error:
            if error.max_wait == call.turn.max_wait:
                raise
        return await self.flights.share(call.key, fetch)

    async def fetch(
        self, call: Call, stop: StopCheck | None = None, at_send: StopCheck | None = None
    ) -> Any:
        """The call's value, from the cache or one request (no single flight in this
        process: a bulk job registers its own task as the flight; a shared cache's
        across processes, though)."""
        cache = self.cache if call.endpoint.cacheable else None
        if cache is not None and (cached := cache.get(call.subject)) is not None:
            return cached
        endpoint = call.endpoint
        parse = functools.partial(parse_model, endpoint.model, requires=endpoint.requires)
        if self.shared is not None:
            return await self.shared.run(
                call, functools.partial(self._fetch, call, parse, stop, at_send), parse
            )
        value = await self.pipeline.call(call, parse, stop=stop, at_send=at_send)
        if cache is not None:
            cache.put(call.subject, value)
        return value

    async def _fetch(
        self,
        call: Call,
        parse: Callable[[bytes], T],
        stop: StopCheck | None,
        at_send: StopCheck | None,
    ) -> tuple[T, bytes]:
        """One request's value and the body it was parsed from."""
        bodies: list[bytes] = []

        def keep(body: bytes) -> T:
            value = parse(body)
            bodies.append(body)
            return value

        value = await self.pipeline.call(call, keep, stop=stop, at_send=at_send)
        return value, bodies[-1]
