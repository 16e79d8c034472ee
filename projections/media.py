"""The media read model (`message_media`, `media_blobs`): its fold and its queries."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
import psycopg
from psycopg import sql

from commands.event_store import STREAM_CTE, STREAM_JSON, Place, RecordedEvent, decode_stream
from domain.events import MediaAttached, stream_of
from projections.fold import SqlFold

NAME = "media"
LINKS = "message_media"
BLOBS = "media_blobs"

# The attach command has usually written the blob row already; folding it
# again changes nothing, and is what lets a replay rebuild the table. A link
# is keyed by its event (message, stream version), so folding a range again
# (a retry, an overlapping range) finds its links there and adds nothing.
_FOLD = """
WITH attached AS (
    SELECT (data->>'message_id')::uuid AS message_id, version, data->>'sha256' AS sha256,
           data->>'content_type' AS content_type, data->>'format' AS format,
           (data->>'size')::int AS size, (data->>'width')::int AS width,
           (data->>'height')::int AS height,
           (data->>'attached_at')::timestamptz AS attached_at, tx_id, position
    -- The view's `data` named once (see projections.fold).
    FROM (SELECT version, data, tx_id, position FROM {events}
          WHERE {in_range} AND type = {attached} OFFSET 0) AS e
),
blobs AS (
    INSERT INTO {media_blobs} (sha256, content_type, format, size, width, height)
    SELECT DISTINCT ON (sha256) sha256, content_type, format, size, width, height
    FROM attached ORDER BY sha256, tx_id, position
    ON CONFLICT (sha256) DO NOTHING
)
INSERT INTO {message_media} (message_id, stream_version, sha256, attached_at)
SELECT message_id, version, sha256, attached_at FROM attached
ON CONFLICT (message_id, stream_version) DO NOTHING
"""


FOLD = SqlFold(
    NAME,
    _FOLD,
    tables=(LINKS, BLOBS),
    types={"attached": MediaAttached},
    reads={"data": (MediaAttached,)},
)


def MediaProjector() -> SqlFold:
    """The media fold, by the name it had as a class of its own."""
    return FOLD


class Blob(msgspec.Struct, frozen=True, kw_only=True):
    sha256: str
    content_type: str
    format: str
    size: int
    width: int
    height: int


class MediaRow(msgspec.Struct, frozen=True, kw_only=True):
    sha256: str
    content_type: str
    format: str
    size: int
    width: int
    height: int
    attached_at: datetime


class MediaView(msgspec.Struct, frozen=True, kw_only=True):
    """A message's images as one statement saw them: the read model's rows
    when it has folded every event of the stream, else the stream to fold."""

    place: Place
    """The stream's last event in the reading order."""
    rows: list[MediaRow] | None
    stream: list[RecordedEvent]
    """The stream, when `rows` is None."""


# The model holds every image of the message when this projector's checkpoint
# is at or past the stream's last event visible to the statement. (Its last
# version may come earlier: the processing stage's SmsProcessed can precede an
# image attached while its batch ran.) Check, rows and, when the model is
# behind, the stream: one snapshot. No row back: no such message. Each image's
# blob is one probe of its key (OFFSET 0 keeps it one): as a join, a plan made
# before media_blobs has statistics hashes the whole table.
_MEDIA = sql.SQL(
    "WITH {stream_cte}, folded AS ("
    " SELECT coalesce((last.tx_id, last.position) <= (c.tx_id, c.position), false) AS yes"
    " FROM last LEFT JOIN projection_checkpoints AS c ON c.name = %(name)s)"
    " SELECT last.tx_id::text, last.position, folded.yes,"
    " CASE WHEN folded.yes THEN coalesce((SELECT json_agg(json_build_object("
    " 'sha256', b.sha256, 'content_type', b.content_type, 'format', b.format, 'size', b.size,"
    " 'width', b.width,"
    " 'height', b.height, 'attached_at', m.attached_at) ORDER BY m.stream_version)"
    " FROM message_media AS m CROSS JOIN LATERAL"
    " (SELECT * FROM media_blobs WHERE sha256 = m.sha256 OFFSET 0) AS b"
    " WHERE m.message_id = %(id)s), '[]')::text ELSE {stream_json} END"
    " FROM last, folded"
).format(stream_cte=sql.SQL(STREAM_CTE), stream_json=sql.SQL(STREAM_JSON))

_rows_decoder = msgspec.json.Decoder(list[MediaRow])


async def media_of(conn: psycopg.AsyncConnection[Any], message_id: UUID) -> MediaView | None:
    """A message's images in attach order; None when there is no such message."""
    cur = await conn.execute(
        _MEDIA, {"stream": stream_of(message_id), "id": message_id, "name": NAME}
    )
    found = await cur.fetchone()
    if found is None:
        return None
    tx_id, position, folded, document = found
    place = Place(int(tx_id), position)
    if folded:
        return MediaView(place=place, rows=_rows_decoder.decode(document), stream=[])
    return MediaView(place=place, rows=None, stream=decode_stream(document))


async def get_blob(conn: psycopg.AsyncConnection[Any], sha256: str) -> Blob | None:
    cur = await conn.execute(
        "SELECT sha256, content_type, format, size, width, height FROM media_blobs"
        " WHERE sha256 = %s",
        (sha256,),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    sha, content_type, image_format, size, width, height = row
    return Blob(
        sha256=sha,
        content_type=content_type,
        format=image_format,
        size=size,
        width=width,
        height=height,
    )
