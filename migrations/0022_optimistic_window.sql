-- ReceiveSms decides on its senders' windows as read without a lock, then
-- writes only if nothing has changed since (commands/receive_sms.py). This is
-- the check its write runs first. It takes the senders' locks, in key order as
-- every writer of the window does, then looks, in a snapshot taken once they
-- are held (each statement of a VOLATILE function takes one), for a row in
-- their windows at `read_at` that the decision did not see. It raises
-- serialization_failure when it finds one, or when the read is older than
-- `fresh` (a message's time is the read's; NULL: no bound), and the caller
-- decides again.
-- Rows are only ever added to a window within its span (pruning takes those
-- twice as old), so a row not seen is the only change that matters.
CREATE FUNCTION senders_unchanged(
    senders text[], seed bigint, seen uuid[], read_at timestamptz, span interval,
    fresh interval
) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(k)
    FROM (SELECT DISTINCT hashtextextended(s, seed) AS k
          FROM unnest(senders) AS s ORDER BY 1) AS keys;
    IF clock_timestamp() - read_at > fresh THEN
        RAISE EXCEPTION 'the senders'' windows were read % ago', clock_timestamp() - read_at
            USING ERRCODE = 'serialization_failure';
    END IF;
    -- One probe of the primary key per sender, as the window's read (OFFSET 0).
    IF EXISTS (
        SELECT FROM unnest(senders) AS s (sender)
        CROSS JOIN LATERAL (
            SELECT w.message_id FROM sender_window AS w
            WHERE w.sender = s.sender AND w.received_at + span > read_at
            OFFSET 0
        ) AS w
        WHERE w.message_id <> ALL (seen)
    ) THEN
        RAISE EXCEPTION 'a sender''s window changed since it was read'
            USING ERRCODE = 'serialization_failure';
    END IF;
    RETURN true;
END
$$;
REVOKE ALL ON FUNCTION senders_unchanged(text[], bigint, uuid[], timestamptz, interval, interval)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION senders_unchanged(text[], bigint, uuid[], timestamptz, interval, interval)
    TO smsq_service;
