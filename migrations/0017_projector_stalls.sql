-- A follower that cannot fold an event stops there (it never skips one) and
-- says so here, where every process's /readyz and /metrics can read it: the
-- position of the event, the error, and since when. Moving the checkpoint
-- clears it.
ALTER TABLE projection_checkpoints
    ADD COLUMN stalled_position bigint,
    ADD COLUMN stalled_error    text,
    ADD COLUMN stalled_at       timestamptz;
