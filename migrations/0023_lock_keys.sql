-- One way to take a set of advisory locks, for every writer that decides on
-- what it read (commands/handler.py `lock`) and for the check of the write
-- decided before its locks (senders_unchanged, redefined here to use it):
-- each key once, in key order, so that two writers taking overlapping sets
-- queue behind each other and never deadlock. PERFORM runs the query to its
-- end: every key is locked, not only the first.
CREATE FUNCTION lock_keys(keys text[], seed bigint) RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(k)
    FROM (SELECT DISTINCT hashtextextended(s, seed) AS k
          FROM unnest(keys) AS s ORDER BY 1) AS keyed;
END
$$;
REVOKE ALL ON FUNCTION lock_keys(text[], bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION lock_keys(text[], bigint) TO smsq_service;

-- As in 0022, but for the locks, now taken by lock_keys.
CREATE OR REPLACE FUNCTION senders_unchanged(
    senders text[], seed bigint, seen uuid[], read_at timestamptz, span interval,
    fresh interval
) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM lock_keys(senders, seed);
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
