"""ProcessSms: what a received message gets once the processing stage has seen it."""

from __future__ import annotations

from datetime import datetime

from domain.encoding import segment
from domain.events import SmsProcessed
from domain.message import MessageState
from domain.phone import PhoneNumber


def decide_process(state: MessageState, now: datetime) -> SmsProcessed | None:
    """The SmsProcessed event, or None when the message was processed already."""
    if state.processed is not None:
        return None
    counted = segment(state.text)
    return SmsProcessed(
        message_id=state.message_id,
        encoding=counted.encoding,
        segments=counted.segments,
        from_region=PhoneNumber.parse(state.sender, "from").region,
        to_region=PhoneNumber.parse(state.recipient, "to").region,
        processed_at=now,
    )
