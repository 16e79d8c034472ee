-- Events that evolve. The log keeps each event as it was written, with the
-- schema_version it was written in. The set-based folds never read `events`
-- directly: they read `current_events`, where every event's data is in its
-- type's current version, whatever version it was stored in. The steps from
-- one version to the next are those of domain/upcasting.py, written again in
-- SQL; a test holds the two to agreeing.
--
-- Adding a version: a migration that adds the step (a function from one
-- version's data to the next's) and replaces upcast_event with one that
-- knows it. The view need not change.

-- What no fold may do is read an event it does not understand as if it did:
-- a version newer than this database's steps, or one with no step, is an error.
-- Call it with an argument taken from the event: an immutable call with only
-- constant arguments is evaluated while a statement is planned, branch taken
-- or not.
CREATE FUNCTION unreadable_event(event_type text, version smallint, reason text)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RAISE EXCEPTION 'cannot read % version %: %', event_type, version, reason
        USING ERRCODE = 'data_exception',
              HINT = 'Apply the migrations of the code that wrote it.';
END
$$;

-- A plain expression, so PostgreSQL inlines it into the statements that read
-- the view: no function call per event, and the folds keep their plans.
CREATE FUNCTION upcast_event(event_type text, version smallint, data jsonb)
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN (event_type, version) IN (('SmsReceived', 1), ('SmsProcessed', 1), ('MediaAttached', 1))
        THEN data
    ELSE unreadable_event(event_type, version, 'no upcasting step for it in this database')
END;

CREATE VIEW current_events AS
SELECT position, tx_id, stream_id, version, event_id, type,
       upcast_event(type, schema_version, data) AS data, metadata, recorded_at
FROM events;
