"""The processing stage: a reactor that appends SmsProcessed for each SmsReceived.

It follows the log like a projector (same lease, same exactly-once checkpoint),
but what it writes is events: each with the stream's expected version and an
id derived from the SmsReceived it answers, so a message is never processed
twice, whoever races it.
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
import psycopg

from commands.event_store import Append, append, lock_streams, read_streams
from commands.notify import CHANNEL
from domain.events import EventMetadata, SmsReceived, stream_of
from domain.message import fold
from domain.processing import decide_process
from projections.log import Checkpoint, read_range

NAME = "processing"
ACTOR = "processing-stage"
_IDS = uuid.UUID("5d1f3c52-6f0e-4e43-9a39-3b0d7a3c1e55")


class ProcessingStage:
    name = NAME

    async def apply(
        self, conn: psycopg.AsyncConnection[Any], lo: Checkpoint, hi: Checkpoint
    ) -> None:
        received = await read_range(conn, lo, hi, (SmsReceived.TYPE,))
        if not received:
            return
        # An upload attaching to one of these messages meanwhile would make
        # the append conflict and the whole batch wait to be tried again.
        await lock_streams(conn, [r.stream_id for r in received])
        # Queued behind the locks, so the time is read once they are held; in
        # a pipeline it arrives with the streams, in the same round trip.
        clock = await conn.execute("SELECT clock_timestamp()")
        streams = await read_streams(conn, [r.stream_id for r in received])
        row = await clock.fetchone()
        assert row is not None
        now = row[0]
        appends = []
        for trigger in received:
            stream = streams[trigger.stream_id]
            state = fold(r.decode() for r in stream)
            assert state is not None
            processed = decide_process(state, now)
            if processed is None:
                continue
            cause = msgspec.json.decode(trigger.metadata, type=EventMetadata)
            metadata = EventMetadata(
                correlation_id=cause.correlation_id,
                causation_id=trigger.event_id,
                actor=ACTOR,
                request_id=cause.request_id,
            )
            appends.append(
                Append(
                    stream_of(state.message_id),
                    state.version,
                    [processed],
                    metadata,
                    [uuid.uuid5(_IDS, str(trigger.event_id))],
                )
            )
        if appends:
            await append(conn, appends)
            # Inside the transaction, so it is delivered only if this commits; this
            # reactor is a single writer, so the commit-time lock costs no one.
            await conn.execute(f"NOTIFY {CHANNEL}")
