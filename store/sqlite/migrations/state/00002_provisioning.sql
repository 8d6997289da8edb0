-- +goose Up
-- The provisioning system's full record of a user (SCIM attributes beyond
-- the ones keygate indexes), opaque to everything but the SCIM endpoint.
ALTER TABLE users ADD COLUMN profile TEXT NOT NULL DEFAULT '';

-- Stable listing order for paging: creation, then id.
CREATE INDEX users_created ON users (created, id);
CREATE INDEX groups_created ON groups (created, id);

-- Bearer tokens that identity providers provision with. Only hashes are
-- kept; a revoked token stays for the audit trail and frees its name.
CREATE TABLE provisioning_tokens (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    secret_hash BLOB NOT NULL UNIQUE,
    created     INTEGER NOT NULL,
    expires     INTEGER,
    revoked     INTEGER,
    last_used   INTEGER
);
CREATE UNIQUE INDEX provisioning_tokens_active_name ON provisioning_tokens (name) WHERE revoked IS NULL;

-- +goose Down
DROP TABLE provisioning_tokens;
DROP INDEX groups_created;
DROP INDEX users_created;
ALTER TABLE users DROP COLUMN profile;
