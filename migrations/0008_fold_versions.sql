-- Each sms_messages row remembers the place in the log, in the reading order
-- (tx_id, position), of the last event folded into it, so that folding a
-- range again applies nothing twice.
ALTER TABLE sms_messages
    ADD COLUMN folded_tx_id    xid8   NOT NULL DEFAULT '0',
    ADD COLUMN folded_position bigint NOT NULL DEFAULT 0;

-- The rows folded so far hold every event of their stream up to the
-- projector's checkpoint: their place is the last of those.
UPDATE sms_messages AS m
SET folded_tx_id = last.tx_id, folded_position = last.position
FROM (
    SELECT DISTINCT ON (e.stream_id) e.stream_id, e.tx_id, e.position
    FROM events AS e
    JOIN projection_checkpoints AS c ON c.name = 'sms_messages'
    WHERE (e.tx_id, e.position) <= (c.tx_id, c.position)
      AND e.type IN ('SmsReceived', 'SmsProcessed', 'MediaAttached')
    ORDER BY e.stream_id, e.tx_id DESC, e.position DESC
) AS last
WHERE last.stream_id = 'sms-' || m.id::text;
