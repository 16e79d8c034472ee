-- Seals: the sealer folds the log, in reading order, into numbered seals.
-- Each covers the events after the previous seal's end up to its own
-- (`to_tx_id`, `to_position`), chains to the previous seal's hash and is
-- signed with an Ed25519 key kept outside the database, so that whoever can
-- rewrite rows (and recompute every event hash) still cannot forge a seal.
-- The encoding each hash covers is in docs/audit.md.
CREATE TABLE seals (
    number         bigint      PRIMARY KEY CHECK (number > 0),
    after_tx_id    xid8        NOT NULL,
    after_position bigint      NOT NULL,
    to_tx_id       xid8        NOT NULL,
    to_position    bigint      NOT NULL,
    from_position  bigint      NOT NULL,
    events         integer     NOT NULL CHECK (events > 0),
    events_digest  text        NOT NULL CHECK (events_digest ~ '^[0-9a-f]{64}$'),
    previous       text        NOT NULL CHECK (previous ~ '^([0-9a-f]{64})?$'),
    hash           text        NOT NULL CHECK (hash ~ '^[0-9a-f]{64}$'),
    key_id         text        NOT NULL,
    signature      text        NOT NULL,
    sealed_at      timestamptz NOT NULL
);

-- The public halves of the sealing keys, so that the database alone says
-- which key signed each seal. An auditor who kept the key apart (`smsq
-- verify --public-key`) need not trust this table.
CREATE TABLE seal_keys (
    key_id     text        PRIMARY KEY CHECK (key_id ~ '^[0-9a-f]{64}$'),
    public_key text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE FUNCTION reject_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER seals_no_update_delete BEFORE UPDATE OR DELETE ON seals
    FOR EACH ROW EXECUTE FUNCTION reject_change();
CREATE TRIGGER seals_no_truncate BEFORE TRUNCATE ON seals
    FOR EACH STATEMENT EXECUTE FUNCTION reject_change();
CREATE TRIGGER seal_keys_no_update_delete BEFORE UPDATE OR DELETE ON seal_keys
    FOR EACH ROW EXECUTE FUNCTION reject_change();
CREATE TRIGGER seal_keys_no_truncate BEFORE TRUNCATE ON seal_keys
    FOR EACH STATEMENT EXECUTE FUNCTION reject_change();

GRANT SELECT, INSERT ON seals, seal_keys TO smsq_service;
GRANT SELECT ON seals, seal_keys TO smsq_auditor;
