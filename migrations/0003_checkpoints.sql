-- Where each projector has read up to in the log, in the log's reading order
-- (tx_id, position). A projector writes its read-model changes and its
-- checkpoint in one transaction, so each event is folded exactly once.
-- The row is also the projector's lease: a batch runs while holding it
-- (FOR UPDATE SKIP LOCKED), so one instance works at a time and a standby
-- takes over the moment the active one's transaction ends, crash included.
CREATE TABLE projection_checkpoints (
    name       text        PRIMARY KEY,
    tx_id      xid8        NOT NULL DEFAULT '0',
    position   bigint      NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
