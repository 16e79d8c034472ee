-- Write-side state, kept in the same transaction as the append that it mirrors.

-- Each sender's accepted messages of the last minute: an inline projection of
-- SmsReceived, read under the sender's lock to decide deduplication and the
-- rate limit. Rows older than the window are pruned; the log can rebuild it.
CREATE TABLE sender_window (
    sender      text        NOT NULL,
    received_at timestamptz NOT NULL,
    message_id  uuid        NOT NULL,
    recipient   text        NOT NULL,
    text        text        NOT NULL,
    PRIMARY KEY (sender, received_at, message_id)
);

-- Idempotency-Key results, per actor, so a retried request replays its answer.
CREATE TABLE idempotency_keys (
    actor        text        NOT NULL,
    key          text        NOT NULL,
    request_hash bytea       NOT NULL,
    status       smallint    NOT NULL,
    message_id   uuid        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (actor, key)
);
CREATE INDEX idempotency_keys_created_at_idx ON idempotency_keys (created_at);
