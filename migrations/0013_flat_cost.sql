-- What keeps the cost of a request flat as the tables grow.

-- Pruning finds the oldest window rows through this index, a batch at a time,
-- instead of reading the whole table every time it runs.
CREATE INDEX sender_window_received_at_idx ON sender_window (received_at);

-- Statistics and visibility kept current on the tables that grow or churn.
-- A prepared statement keeps its plan until the table's statistics change, so
-- a table analysed only when it was nearly empty (or never) keeps plans made
-- for a table of that size. The defaults wait for a tenth of the table (a
-- fifth, to vacuum) to change, which on the log means millions of rows late.
-- sender_window and idempotency_keys turn over their rows continually
-- (inserted, then pruned): vacuumed and analysed after small changes.
ALTER TABLE sender_window SET (
    autovacuum_analyze_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.05,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_scale_factor = 0.05,
    autovacuum_vacuum_insert_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0.05
);
ALTER TABLE idempotency_keys SET (
    autovacuum_analyze_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.05,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_scale_factor = 0.05,
    autovacuum_vacuum_insert_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0.05
);
-- The log and the read models only grow: analysed after a small share of new
-- rows, and vacuumed after inserts so that index-only scans of the log's
-- reading order find its pages all-visible.
ALTER TABLE events SET (
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_insert_scale_factor = 0.05
);
ALTER TABLE sms_messages SET (
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_insert_scale_factor = 0.05
);
ALTER TABLE message_media SET (autovacuum_analyze_scale_factor = 0.02);
ALTER TABLE media_blobs SET (autovacuum_analyze_scale_factor = 0.02);
