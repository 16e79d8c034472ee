-- The bytes the media store holds, for SMSQ_MEDIA_BUDGET_BYTES: one row, kept
-- by the attach command in the transaction that records new images (a media
-- row inserted is an image's bytes stored once), so a budget check is one
-- row read, whatever the number of images, and every host sees the same sum.
-- Write-side state, like sender_window: a replay of the read models leaves it
-- alone, and it can always be recounted from media_blobs.
CREATE TABLE media_usage (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    bytes    bigint  NOT NULL CHECK (bytes >= 0)
);
INSERT INTO media_usage (bytes) SELECT coalesce(sum(size), 0) FROM media_blobs;

GRANT SELECT, UPDATE ON media_usage TO smsq_service;
