"""``Pager``: an async iterator over a paged listing that hides the vendor's cursors.

Each listing spells its cursor differently (``maxCursor`` in, ``max_cursor`` out;
``minTime`` in, ``minCursor`` out; ``cursor``) and its end differently (``has_more`` as
0/1, ``hasMore`` as a boolean). Its endpoint's :class:`Paging` row says how; users only
see items and one opaque string cursor. A page is requested only when the caller asks
for an item past the ones already fetched, so stopping early never pays for a page
nobody reads.
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, Generic, Self, TypeVar

import attrs

from .._errors import DumplingError, InvalidInputError, InvalidResponseError
from .converter import parse_object, structure
from .endpoints import Call, Endpoint, Paging
from .inputs import check_limit
from .pipeline import Pipeline
from .turns import BULK

__all__ = ["Page", "Pager", "open_pager", "parse_page", "structure_item"]

T = TypeVar("T")
# Pages in a row that bring nothing new before the listing is called finished anyway: a
# listing that never ends would otherwise spend credits forever.
_MAX_EMPTY_PAGES = 3


@attrs.frozen
class Page(Generic[T]):
    """One page as the client understood it."""

    items: tuple[T, ...]
    next_cursor: str | None
    has_more: bool
    dropped: int = 0  # entries that were not objects


def _has_more(data: dict[str, Any]) -> bool:
    value = data.get("has_more", data.get("hasMore"))
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value) if isinstance(value, bool | int) else False


def _cursor_text(value: object) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | str):
        text = str(value).strip()
        return text or None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return None


def structure_item(item_type: type[T], item: object) -> T | None:
    try:
        return structure(item, item_type)
    except InvalidResponseError:
        # One odd item must not cost the page (and every retry of it): keep what came,
        # untyped, in ``raw``. Only a non-object is dropped.
        return item_type(raw=item) if isinstance(item, dict) else None  # type: ignore[call-arg]


def parse_page(endpoint: Endpoint, body: bytes) -> Page[Any]:
    """Decode one page: its items (typed), the next cursor, whether more follow."""
    spec = _paging(endpoint)
    data = parse_object(body)
    code = data.get("status_code")
    if spec.items_key not in data or (isinstance(code, int) and code != 0):
        # An error in a 200's clothing: treating it as an empty last page would end the
        # listing early and lose the cursor.
        detail = data.get("status_msg") or data.get("message") or f"no {spec.items_key!r}"
        raise InvalidResponseError(
            f"not a page of {spec.items_key!r}: {str(detail)[:200]}", status=200
        )
    raw_items = data[spec.items_key]
    if raw_items is None:
        raw_items = []
    if not isinstance(raw_items, list):
        raise InvalidResponseError(f"{spec.items_key!r} is not a list", status=200)
    typed = (structure_item(endpoint.model, item) for item in raw_items)
    items = tuple(item for item in typed if item is not None)
    next_cursor = _cursor_text(data.get(spec.cursor_key))
    return Page(items, next_cursor, _has_more(data), len(raw_items) - len(items))


_SKIP_MARK = "#"  # "<page cursor>#<items of that page already consumed>"
_MAX_SKIP = 10_000


def _paging(endpoint: Endpoint) -> Paging:
    assert endpoint.paging is not None, f"{endpoint.name} is not a listing"
    return endpoint.paging


def check_cursor(spec: Paging, cursor: object) -> tuple[str | None, int]:
    """A user's ``start_cursor`` as (page cursor, items of that page to skip), refused
    early when malformed."""
    if cursor is None:
        return None, 0
    text = _cursor_text(cursor)
    page: str | None = text
    skip = 0
    if text is not None and _SKIP_MARK in text:
        page, _, count = text.rpartition(_SKIP_MARK)
        skip = int(count) if count.isascii() and count.isdigit() else -1
        page = page or None  # "#5": five items into the first page
    numeric = page is None or (page.isascii() and page.isdigit())
    if (
        text is None
        or len(text) > 80
        or not 0 <= skip <= _MAX_SKIP
        or not (spec.cursor_as_str or numeric)
        or (page is not None and _SKIP_MARK in page)
    ):
        raise InvalidInputError(
            f"start_cursor must be a cursor this listing gave out, got {cursor!r:.40}"
        )
    return page, skip


def _token(page: str | None, skip: int) -> str | None:
    return f"{page or ''}{_SKIP_MARK}{skip}" if skip else page


class Pager(AsyncIterator[T]):
    """Items of a paged listing, fetched one page at a time as they are consumed.

    ``cursor`` is exactly where the next item is (``None``: the start); pass it as
    ``start_cursor=`` to continue later. Mid-page it reads ``"<page cursor>#<n>"``: that
    page is fetched again and its first *n* items skipped. ``page_cursor`` is the API's
    own cursor of that page. ``ended`` says the whole listing was read,
    ``done`` that nothing more will be yielded (ended, ``limit`` or ``aclose()``). If a
    page fails after retries, the error is raised with ``error.cursor`` set to that
    page's cursor, and iterating again retries it. ``limit`` caps the items yielded;
    ``pages`` counts the pages fetched. Several tasks may consume one pager: each page
    is still fetched once.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        endpoint: Endpoint,
        params: dict[str, Any],
        *,
        target: str,
        limit: int | None = None,
        start_cursor: str | None = None,
        start_skip: int = 0,
        page_size: int | None = None,
    ) -> None:
        self._pipeline = pipeline
        self._endpoint = endpoint
        self._spec = _paging(endpoint)
        self._params = params
        self._target = target
        self._limit = limit
        self._page_size = page_size
        self._cursor = start_cursor  # the page the buffered items came from
        self._next_cursor = start_cursor
        self._skip = start_skip  # items of the next page to drop (a mid-page resume)
        self._taken = 0  # items yielded from the buffered page
        self._buffer: deque[T] = deque()
        self._seen_cursors: set[str | None] = {start_cursor}
        self._empty_pages = 0
        self._ended = False  # the API said nothing follows
        self._closed = False
        self._fetching: asyncio.Lock | None = None
        self._fetches = 0  # page fetches finished, to tell waiters one failed meanwhile
        self._failed: DumplingError | None = None
        self.pages = 0
        self.yielded = 0

    def __repr__(self) -> str:
        return (
            f"Pager({self._endpoint.name}, target={self._target!r:.80}, "
            f"cursor={self.cursor!r}, yielded={self.yielded}, pages={self.pages}, "
            f"ended={self.ended})"
        )

    @property
    def cursor(self) -> str | None:
        """Where to resume, to the item (``None``: the start, or nothing when ``ended``)."""
        if self._buffer:
            return _token(self._cursor, self._taken)
        return _token(self._next_cursor, self._skip)

    @property
    def page_cursor(self) -> str | None:
        """The API's cursor of the page the next item comes from."""
        return self._cursor if self._buffer else self._next_cursor

    @property
    def ended(self) -> bool:
        """True once every item of the listing was yielded: nothing is left to resume."""
        return self._ended and not self._buffer

    @property
    def done(self) -> bool:
        """True once no further item will be yielded: the listing ended, ``limit`` was
        reached, or ``aclose()`` was called."""
        return self.ended or self._closed or self._at_limit()

    def _at_limit(self) -> bool:
        return self._limit is not None and self.yielded >= self._limit

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> T:
        if self._closed or self._at_limit():
            raise StopAsyncIteration
        while not self._buffer:
            if self._ended or self._closed:
                raise StopAsyncIteration
            # Consumers sharing one pager wait for the page being fetched instead of
            # each buying the same page.
            if self._fetching is None:
                self._fetching = asyncio.Lock()
            finished = self._fetches
            async with self._fetching:
                if self._fetches != finished and self._failed is not None:
                    raise self._failed  # the page failed for the consumer ahead of us
                if not self._buffer and not self._ended and not self._closed:
                    try:
                        await self._fetch()
                        self._failed = None
                    except DumplingError as error:
                        self._failed = error
                        raise
                    finally:
                        self._fetches += 1
        if self._at_limit():
            raise StopAsyncIteration
        self.yielded += 1
        self._taken += 1
        return self._buffer.popleft()

    async def aclose(self) -> None:
        """Stop: no further item is yielded and no page requested (``cursor`` still says
        where to resume)."""
        self._closed = True

    async def _fetch(self) -> None:
        spec, cursor = self._spec, self._next_cursor
        params = dict(self._params)
        if cursor is not None:
            # Numbers where the API documents numbers; a cursor it gave out in another
            # form goes back as it came.
            numeric = cursor.isascii() and cursor.isdigit()
            params[spec.cursor_param] = (
                int(cursor) if numeric and not spec.cursor_as_str else cursor
            )
        if spec.count_param is not None and self._page_size is not None:
            count = self._page_size
            if self._limit is not None:  # what the limit still needs, past any skipped
                count = max(1, min(count, self._limit - self.yielded + self._skip))
            params[spec.count_param] = count
        try:
            page = await self._pipeline.call(
                Call(self._endpoint, self._target, params, turn=BULK),
                functools.partial(parse_page, self._endpoint),
            )
        except DumplingError as error:
            error.cursor = _token(cursor, self._skip)
            raise
        self.pages += 1
        self._cursor = cursor
        items = page.items[self._skip :]
        self._taken, self._skip = len(page.items) - len(items), 0
        self._buffer.extend(items)
        if page.dropped:
            self._pipeline.log.warning(
                "page_items_dropped", endpoint=self._endpoint.name, count=page.dropped
            )
        self._empty_pages = 0 if page.items else self._empty_pages + 1
        stalled = page.next_cursor in self._seen_cursors or self._empty_pages >= _MAX_EMPTY_PAGES
        if not page.has_more or page.next_cursor is None or stalled:
            if page.has_more:
                # "More" with no way to ask for it, or a cursor going round in circles.
                self._pipeline.log.warning(
                    "pagination_stalled",
                    endpoint=self._endpoint.name,
                    cursor=page.next_cursor,
                    pages=self.pages,
                )
            self._ended = True
            self._next_cursor = None
        else:
            self._seen_cursors.add(page.next_cursor)
            self._next_cursor = page.next_cursor


def _page_size(value: object) -> int | None:
    size = check_limit(value, "page_size")
    if size == 0:
        raise InvalidInputError("page_size must be None or an int >= 1")
    return size


def open_pager(
    pipeline: Pipeline,
    endpoint: Endpoint,
    params: dict[str, Any],
    *,
    target: str,
    limit: int | None,
    start_cursor: str | int | None,
    page_size: int | None,
) -> Pager[Any]:
    """A pager over *endpoint* for *params*; every argument is checked here, before any
    credit is reserved."""
    page, skip = check_cursor(_paging(endpoint), start_cursor)
    return Pager(
        pipeline,
        endpoint,
        params,
        target=target,
        limit=check_limit(limit),
        start_cursor=page,
        start_skip=skip,
        page_size=_page_size(page_size),
    )
