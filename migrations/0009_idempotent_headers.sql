-- The quota an Idempotency-Key's first answer reported (its RateLimit-* headers),
-- so that a replay repeats that answer as it was sent rather than the quota of
-- the moment it is replayed.
-- Nullable: keys stored before this migration replay without those headers.
-- With no default, adding the columns rewrites no row and holds the table's
-- lock only for the catalogue change, however many keys are kept.
ALTER TABLE idempotency_keys
    ADD COLUMN quota_limit     smallint,
    ADD COLUMN quota_remaining smallint,
    ADD COLUMN quota_reset     integer;
