-- Least privilege by default: the owner (who runs these migrations) makes the
-- roles the rest of smsq uses. Roles belong to the whole cluster, so they are
-- made only when absent; two databases migrating at once may race to make
-- them, and the loser finds the role there.
--   smsq_service: serves requests and runs the followers of the log.
--   smsq_auditor: reads the log, the seals and the public key; writes nothing.
-- They may log in; how they authenticate (password, certificate, peer) is the
-- cluster's configuration, not the schema's.
DO $$
DECLARE
    name text;
BEGIN
    FOREACH name IN ARRAY ARRAY['smsq_service', 'smsq_auditor'] LOOP
        BEGIN
            EXECUTE format('CREATE ROLE %I LOGIN', name);
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
        IF NOT (SELECT rolcanlogin FROM pg_roles WHERE rolname = name) THEN
            EXECUTE format('ALTER ROLE %I LOGIN', name);
        END IF;
    END LOOP;
END
$$;

GRANT USAGE ON SCHEMA public TO smsq_service, smsq_auditor;

-- The log: read, and append naming only the columns a writer chooses. Where
-- an event goes, when and in which transaction it was written, and its hash
-- are the database's to say (see the trigger of the next migration).
REVOKE ALL ON events FROM smsq_service, smsq_auditor;
GRANT SELECT ON events TO smsq_service, smsq_auditor;
GRANT INSERT (stream_id, version, event_id, type, schema_version, data, metadata)
    ON events TO smsq_service;

-- Write-side state: kept with the appends, pruned when stale.
GRANT SELECT, INSERT, DELETE ON sender_window, idempotency_keys TO smsq_service;

-- The folds read the log through current_events, every event in its current version.
GRANT SELECT ON current_events TO smsq_service;

-- Followers of the log: their checkpoints (also their leases) and read models.
GRANT SELECT, INSERT, UPDATE ON projection_checkpoints, sms_messages, message_counters
    TO smsq_service;

-- Media: the attach command records each image's row with its event; the
-- media projector folds the links (and the same rows) from the log.
GRANT SELECT, INSERT ON media_blobs, message_media TO smsq_service;

-- Keys are made and revoked by operators (as the owner); the service only
-- reads them. The auditor compares each key with its events, never its hash.
GRANT SELECT ON api_keys TO smsq_service;
GRANT SELECT (id, scopes, created_at, revoked_at) ON api_keys TO smsq_auditor;

-- Both check that the schema is the one their code expects before working.
GRANT SELECT ON schema_migrations TO smsq_service, smsq_auditor;

-- /metrics reports the age of the oldest open transaction in the cluster (it
-- holds every follower back). Seeing other roles' sessions takes pg_monitor;
-- this function lends the owner's view for that one figure only.
CREATE FUNCTION oldest_transaction_seconds() RETURNS double precision
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog
RETURN (SELECT coalesce(extract(epoch FROM clock_timestamp() - min(xact_start)), 0)::float8
        FROM pg_stat_activity WHERE backend_xid IS NOT NULL);
REVOKE ALL ON FUNCTION oldest_transaction_seconds() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION oldest_transaction_seconds() TO smsq_service;
