-- What an Idempotency-Key's first request came to, as the write side names it
-- ('new': a message was accepted; 'duplicate': an earlier one stood), instead
-- of the HTTP status it was answered with: mapping outcomes to statuses is the
-- API's business, and a replay must not depend on how it once mapped them.
ALTER TABLE idempotency_keys
    ADD COLUMN outcome text CHECK (outcome IN ('new', 'duplicate'));
UPDATE idempotency_keys SET outcome = CASE status WHEN 201 THEN 'new' ELSE 'duplicate' END;
ALTER TABLE idempotency_keys ALTER COLUMN outcome SET NOT NULL;
ALTER TABLE idempotency_keys DROP COLUMN status;
