-- Keys made before access changes were events get theirs now, so that the
-- `access` stream accounts for every row of api_keys (smsq verify compares
-- them): an ApiKeyCreated for each key and an ApiKeyRevoked for each revoked
-- one, in the order they happened, by the actor "migration".
INSERT INTO events (stream_id, version, event_id, type, schema_version, data, metadata)
SELECT 'access', row_number() OVER (ORDER BY k.at, k.id, k.kind), gen_random_uuid(), k.type, 1,
       k.data, jsonb_build_object('correlation_id', c.id, 'causation_id', c.id,
                                  'actor', 'migration', 'request_id', NULL)
FROM (
    SELECT created_at AS at, id, 0 AS kind, 'ApiKeyCreated' AS type,
           jsonb_build_object('key_id', id, 'name', name, 'scopes', to_jsonb(scopes),
                              'actor', 'migration', 'created_at', created_at) AS data
    FROM api_keys
    UNION ALL
    SELECT revoked_at, id, 1, 'ApiKeyRevoked',
           jsonb_build_object('key_id', id, 'actor', 'migration', 'revoked_at', revoked_at)
    FROM api_keys WHERE revoked_at IS NOT NULL
) AS k
CROSS JOIN LATERAL (SELECT gen_random_uuid() AS id) AS c
ORDER BY k.at, k.id, k.kind;

-- The access stream's events have one version each: current_events passes
-- them through as they are (it refuses only what it cannot read).
CREATE OR REPLACE FUNCTION upcast_event(event_type text, version smallint, data jsonb)
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN (event_type, version) IN (('SmsReceived', 1), ('SmsProcessed', 1), ('MediaAttached', 2),
                                   ('ApiKeyCreated', 1), ('ApiKeyRevoked', 1))
        THEN data
    WHEN (event_type, version) = ('MediaAttached', 1) THEN upcast_media_attached_1(data)
    ELSE unreadable_event(event_type, version, 'no upcasting step for it in this database')
END;
