-- A hash chain per stream: each event's hash covers the hash of the event
-- before it in its stream and every stored column of its own, in the
-- canonical encoding written down in docs/audit.md, so anyone can recompute
-- it from the stored values alone.

-- One field of the encoding: its UTF-8 byte length in decimal, ':', the bytes, LF.
-- Both functions are plain SQL and STABLE (as the functions they call are),
-- not STRICT: PostgreSQL then inlines them into the caller's expression,
-- which costs the trigger a fraction of a call through the SQL executor.
CREATE FUNCTION chain_field(value text) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
RETURN convert_to(octet_length(convert_to(value, 'UTF8'))::text || ':', 'UTF8')
    || convert_to(value, 'UTF8') || '\x0a'::bytea;

CREATE FUNCTION event_hash(
    previous text, event_position bigint, tx_id xid8, stream_id text, version integer,
    event_id uuid, type text, schema_version smallint, data jsonb, metadata jsonb,
    recorded_at timestamptz
) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
RETURN encode(sha256(
    chain_field(coalesce(previous, ''))
    || chain_field(event_position::text)
    || chain_field(tx_id::text)
    || chain_field(stream_id)
    || chain_field(version::text)
    || chain_field(event_id::text)
    || chain_field(type)
    || chain_field(schema_version::text)
    || chain_field(data::text)
    || chain_field(metadata::text)
    -- Microseconds since 1970-01-01 UTC: exact, and the same whatever the time zone.
    || chain_field(((extract(epoch FROM recorded_at) * 1000000)::bigint)::text)
), 'hex');

-- Positions come from a plain sequence that only the trigger below draws
-- from, instead of an identity column that OVERRIDING SYSTEM VALUE can set.
DO $$
DECLARE
    next bigint;
BEGIN
    SELECT greatest(coalesce(pg_sequence_last_value(pg_get_serial_sequence('events', 'position')), 0),
                    coalesce((SELECT max(position) FROM events), 0)) + 1
      INTO next;
    ALTER TABLE events ALTER COLUMN position DROP IDENTITY;
    CREATE SEQUENCE events_position_seq AS bigint OWNED BY events.position;
    PERFORM setval('events_position_seq', next, false);
END
$$;

ALTER TABLE events ALTER COLUMN recorded_at DROP DEFAULT;
ALTER TABLE events ALTER COLUMN tx_id DROP DEFAULT;
ALTER TABLE events ADD COLUMN hash text CHECK (hash ~ '^[0-9a-f]{64}$');

-- The events written before the chain existed get theirs now, stream by stream.
ALTER TABLE events DISABLE TRIGGER events_no_update_delete;
DO $$
DECLARE
    e record;
    previous text;
    stream text;
BEGIN
    FOR e IN SELECT * FROM events ORDER BY stream_id, version LOOP
        IF stream IS DISTINCT FROM e.stream_id THEN
            previous := NULL;
            stream := e.stream_id;
        END IF;
        previous := event_hash(previous, e.position, e.tx_id, e.stream_id, e.version,
            e.event_id, e.type, e.schema_version, e.data, e.metadata, e.recorded_at);
        UPDATE events SET hash = previous WHERE position = e.position;
    END LOOP;
END
$$;
ALTER TABLE events ENABLE TRIGGER events_no_update_delete;
ALTER TABLE events ALTER COLUMN hash SET NOT NULL;

-- Whatever an INSERT says about them, the place, the time, the transaction
-- and the hash are the database's. Appends to one stream are serialised (a
-- version is unique, and writers take the stream's lock first), so the
-- previous hash read here is final; within one statement, the rows inserted
-- before this one are visible to it.
-- SECURITY DEFINER: the trigger draws positions for a writer who may not.
CREATE FUNCTION events_fill() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    previous text;
BEGIN
    NEW.position := nextval('events_position_seq');
    NEW.recorded_at := clock_timestamp();
    NEW.tx_id := pg_current_xact_id();
    IF NEW.version > 1 THEN
        SELECT e.hash INTO previous FROM events AS e
        WHERE e.stream_id = NEW.stream_id AND e.version = NEW.version - 1;
    END IF;
    NEW.hash := event_hash(previous, NEW.position, NEW.tx_id, NEW.stream_id, NEW.version,
        NEW.event_id, NEW.type, NEW.schema_version, NEW.data, NEW.metadata, NEW.recorded_at);
    RETURN NEW;
END;
$$;
REVOKE ALL ON FUNCTION events_fill() FROM PUBLIC;

CREATE TRIGGER events_fill BEFORE INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION events_fill();
