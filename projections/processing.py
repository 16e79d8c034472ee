"""The processing stage: a reactor that decides ProcessSms for each SmsReceived.

It follows the log like a projector (same lease, same exactly-once checkpoint),
but what it writes is events, decided by the message's decider through the
one command handler: each with the stream's expected version and an id derived
from the SmsReceived it answers, so a message is never processed twice,
whoever races it.
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
import psycopg

from commands.handler import Intent, decide_on_streams
from domain.commands import MessageCommand, ProcessSms
from domain.decider import Rejection
from domain.events import EventMetadata, SmsReceived, stream_of
from domain.message import message_decider
from projections.log import Checkpoint, read_range

NAME = "processing"
ACTOR = "processing-stage"
_IDS = uuid.UUID("5d1f3c52-6f0e-4e43-9a39-3b0d7a3c1e55")


class ProcessingStage:
    name = NAME

    async def apply(
        self, conn: psycopg.AsyncConnection[Any], lo: Checkpoint, hi: Checkpoint
    ) -> bool:
        received = await read_range(conn, lo, hi, (SmsReceived.TYPE,))
        if not received:
            return False
        intents: list[Intent[MessageCommand]] = []
        for trigger in received:
            cause = msgspec.json.decode(trigger.metadata, type=EventMetadata)
            event = trigger.decode()
            intents.append(
                Intent(
                    stream_of(event.message_id),
                    ProcessSms(message_id=event.message_id),
                    EventMetadata(
                        correlation_id=cause.correlation_id,
                        causation_id=trigger.event_id,
                        actor=ACTOR,
                        request_id=cause.request_id,
                    ),
                    (uuid.uuid5(_IDS, str(trigger.event_id)),),
                )
            )
        # The streams are locked first: an upload attaching to one of these
        # messages meanwhile would make the append conflict and the whole batch
        # wait to be tried again.
        handled = await decide_on_streams(conn, message_decider, intents)
        # The runner tells the log's followers once the batch commits.
        return any(not isinstance(h.decision, Rejection) and h.decision for h in handled)
