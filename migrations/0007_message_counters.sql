-- Counters for /metrics: one row, kept by the message_counters projector, so
-- reading them costs the same with ten messages or a billion, and every API
-- process (and every restart) reads the same numbers.
-- Processing time is SmsProcessed.processed_at - SmsReceived.received_at,
-- both taken from the database's clock; processing_buckets counts it per
-- histogram bucket (not cumulative; the bounds live in the projector's code,
-- and changing them means `smsq replay message_counters`).
CREATE TABLE message_counters (
    id                     boolean          PRIMARY KEY DEFAULT true CHECK (id),
    received               bigint           NOT NULL,
    processed              bigint           NOT NULL,
    media_attached         bigint           NOT NULL,
    processing_seconds_sum double precision NOT NULL,
    processing_buckets     bigint[]         NOT NULL
);
