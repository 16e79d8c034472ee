-- A key's own limits: a request rate (a token bucket kept by each process; NULL:
-- none of its own) and the only numbers it may send from (empty: any). Both
-- are recorded in its ApiKeyCreated event, version 2.
ALTER TABLE api_keys
    ADD COLUMN rate_per_second double precision CHECK (rate_per_second > 0),
    ADD COLUMN senders text[] NOT NULL DEFAULT '{}';

-- smsq verify compares each row with its events: the auditor reads the limits too.
GRANT SELECT (rate_per_second, senders) ON api_keys TO smsq_auditor;

-- ApiKeyCreated version 1 had no limits: it reads as a key with none, as in
-- domain/upcasting.py (api_key_created_limits).
CREATE OR REPLACE FUNCTION upcast_event(event_type text, version smallint, data jsonb)
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN (event_type, version) IN (('SmsReceived', 1), ('SmsProcessed', 1), ('MediaAttached', 2),
                                   ('ApiKeyCreated', 2), ('ApiKeyRevoked', 1))
        THEN data
    WHEN (event_type, version) = ('MediaAttached', 1) THEN upcast_media_attached_1(data)
    WHEN (event_type, version) = ('ApiKeyCreated', 1)
        THEN data || '{"rate_per_second": null, "senders": []}'::jsonb
    ELSE unreadable_event(event_type, version, 'no upcasting step for it in this database')
END;
