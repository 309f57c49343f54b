"""What the listing commands write for one item: its id, which makes "already in OUTPUT"
checkable, and its line, the vendor's item JSON as is (JSONL) or a fixed set of flattened
columns whose first is the id (CSV).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, Literal

import attrs

from .._models import ProfileVideo, TikTokUserSummary, VideoComment
from ._files import csv_cell, csv_line, dumps_record

__all__ = [
    "COMMENT_SHAPE",
    "USER_SHAPE",
    "VIDEO_SHAPE",
    "ItemShape",
    "LineFormat",
    "ListingFormat",
    "item_line",
]

LineFormat = Literal["jsonl", "csv"]  # a file of lines
ListingFormat = Literal["jsonl", "csv", "sqlite"]  # or a database (``_listing_database``)


def _id_text(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = csv_cell(value)  # the form the id takes in a CSV, so both formats agree
    return text or None


@attrs.frozen
class ItemShape:
    """One kind of listed item: its model, its id in the vendor's JSON, its CSV columns."""

    model: type[Any]
    columns: tuple[str, ...]  # the first is the id
    raw_id: Callable[[dict[str, Any]], object]
    cells: Callable[[Any], list[object]]  # the columns after the id, from the model

    def key(self, raw: dict[str, Any]) -> str | None:
        """The item's identity for "already written", or None when it has no id."""
        return _id_text(self.raw_id(raw))


def _video_cells(item: ProfileVideo) -> list[object]:
    stats = item.statistics
    return [
        item.url,
        item.desc,
        item.create_time,
        stats.play_count if stats else None,
        stats.digg_count if stats else None,
        stats.comment_count if stats else None,
        stats.share_count if stats else None,
    ]


def _comment_cells(item: VideoComment) -> list[object]:
    user = item.user.unique_id if item.user else None
    return [user, item.text, item.create_time, item.digg_count, item.reply_comment_total]


def _user_cells(item: TikTokUserSummary) -> list[object]:
    user, stats = item.user, item.stats
    return [
        user.unique_id if user else None,
        user.nickname if user else None,
        user.verified if user else None,
        stats.follower_count if stats else None,
        stats.following_count if stats else None,
        stats.heart_count if stats else None,
        stats.video_count if stats else None,
    ]


def _user_id(raw: dict[str, Any]) -> object:
    user = raw.get("user")
    return user.get("id") if isinstance(user, dict) else None


VIDEO_SHAPE: Final = ItemShape(
    ProfileVideo,
    (
        "aweme_id",
        "url",
        "desc",
        "create_time",
        "play_count",
        "digg_count",
        "comment_count",
        "share_count",
    ),
    lambda raw: raw.get("aweme_id"),
    _video_cells,
)
COMMENT_SHAPE: Final = ItemShape(
    VideoComment,
    ("cid", "user", "text", "create_time", "digg_count", "reply_comment_total"),
    lambda raw: raw.get("cid"),
    _comment_cells,
)
USER_SHAPE: Final = ItemShape(
    TikTokUserSummary,
    (
        "id",
        "unique_id",
        "nickname",
        "verified",
        "follower_count",
        "following_count",
        "heart_count",
        "video_count",
    ),
    _user_id,
    _user_cells,
)


def item_line(shape: ItemShape, item: Any, key: str | None, fmt: LineFormat) -> bytes:
    """The output line (with its newline) for *item*, whose id is *key*."""
    if fmt == "jsonl":
        return dumps_record(item.raw) + b"\n"
    return csv_line([key or "", *(csv_cell(value) for value in shape.cells(item))])
