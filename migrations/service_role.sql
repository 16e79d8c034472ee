-- The role the running service should use: least privilege, applied by the
-- schema's owner (not a migration: roles belong to the whole cluster).
--   psql "$OWNER_URL" -f migrations/service_role.sql
--   ALTER ROLE smsq_service LOGIN PASSWORD '...';   -- or a certificate / IAM auth
-- Then run `smsq serve` and `smsq worker` as smsq_service, and `smsq migrate`,
-- `smsq replay` and `smsq keys` as the owner. A table added by a later
-- migration needs its grant here too.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'smsq_service') THEN
        CREATE ROLE smsq_service NOLOGIN;
    END IF;
END
$$;

GRANT USAGE ON SCHEMA public TO smsq_service;

-- The log: append and read, never change. (The triggers refuse UPDATE, DELETE
-- and TRUNCATE for every role; for this one the privileges are not there either.)
REVOKE ALL ON events FROM smsq_service;
GRANT SELECT, INSERT ON events TO smsq_service;
-- The folds read it through this view: every event in its current version.
GRANT SELECT ON current_events TO smsq_service;

-- Write-side state: kept with the appends, pruned when stale.
GRANT SELECT, INSERT, DELETE ON sender_window, idempotency_keys TO smsq_service;

-- Projectors: their checkpoints and read models.
GRANT SELECT, INSERT, UPDATE ON projection_checkpoints, sms_messages, message_counters
    TO smsq_service;

-- Media: the attach command records each image's row with its event; the
-- media projector folds the links (and the same rows) from the log.
GRANT SELECT, INSERT ON media_blobs, message_media TO smsq_service;

-- Keys are made and revoked by operators (as the owner); the service only reads them.
GRANT SELECT ON api_keys, schema_migrations TO smsq_service;

-- /metrics reports the oldest open transaction of the whole cluster only if
-- the role may see other roles' sessions.
GRANT pg_monitor TO smsq_service;
