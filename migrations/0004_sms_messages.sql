-- The messages read model: one row per message, folded from its events.
CREATE TYPE sms_status AS ENUM ('received', 'stored', 'processed');

CREATE TABLE sms_messages (
    id           uuid        PRIMARY KEY,
    "from"       text        NOT NULL,
    "to"         text        NOT NULL,
    message      text        NOT NULL,
    received_at  timestamptz NOT NULL,
    status       sms_status  NOT NULL,
    media_count  integer     NOT NULL DEFAULT 0,
    processed_at timestamptz,
    encoding     text,
    segments     smallint,
    from_region  text,
    to_region    text
);

-- Every filter of GET /messages is served by an index already in the sort
-- order of the answer (newest first, ties by id), so a page is a short scan.
CREATE INDEX sms_messages_from_idx ON sms_messages ("from", received_at DESC, id DESC);
CREATE INDEX sms_messages_to_idx ON sms_messages ("to", received_at DESC, id DESC);
CREATE INDEX sms_messages_status_idx ON sms_messages (status, received_at DESC, id DESC);
CREATE INDEX sms_messages_received_idx ON sms_messages (received_at DESC, id DESC);
