-- API keys. Only a SHA-256 of each token is kept: the token itself is shown
-- once, when the key is made. Tokens are 256-bit random strings, so a fast
-- hash is enough (a slow one protects guessable passwords, not these).
-- A revoked key keeps its row: the log names keys as actors, and a service
-- that had keys never falls back to being open.
CREATE TABLE api_keys (
    id           text        PRIMARY KEY CHECK (id ~ '^[0-9a-f]{12}$'),
    name         text        NOT NULL DEFAULT '',
    scopes       text[]      NOT NULL CHECK (
        cardinality(scopes) > 0 AND scopes <@ ARRAY['write', 'read', 'audit', 'metrics']
    ),
    token_sha256 bytea       NOT NULL CHECK (length(token_sha256) = 32),
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    revoked_at   timestamptz
);
