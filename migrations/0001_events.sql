-- The event log: the one source of truth. Append-only, enforced below.
CREATE TABLE events (
    position       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id      text        NOT NULL,
    version        integer     NOT NULL CHECK (version > 0),
    event_id       uuid        NOT NULL,
    type           text        NOT NULL,
    schema_version smallint    NOT NULL DEFAULT 1,
    data           jsonb       NOT NULL,
    metadata       jsonb       NOT NULL DEFAULT '{}',
    recorded_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- The writing transaction: readers stay below the oldest one still in
    -- flight, so an event whose transaction commits late is never skipped.
    tx_id          xid8        NOT NULL DEFAULT pg_current_xact_id(),
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, version),
    CONSTRAINT events_event_id_key UNIQUE (event_id)
);

CREATE INDEX events_tx_position_idx ON events (tx_id, position);
CREATE INDEX events_type_tx_position_idx ON events (type, tx_id, position);

CREATE FUNCTION events_reject_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the event log is append-only: % on events is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER events_no_update_delete
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_reject_change();

-- TRUNCATE fires no row triggers: it needs its own statement trigger.
CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_reject_change();
