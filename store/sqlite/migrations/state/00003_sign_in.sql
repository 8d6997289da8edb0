-- +goose Up
-- What the identity provider said about the person at sign-in: principal
-- tags and groups that hold for the session's life.
ALTER TABLE sessions ADD COLUMN tags TEXT NOT NULL DEFAULT '{}';
ALTER TABLE sessions ADD COLUMN groups TEXT NOT NULL DEFAULT '[]';

-- Sign-in may match a provisioned person by email.
CREATE INDEX users_email ON users (email COLLATE NOCASE);

-- +goose Down
DROP INDEX users_email;
ALTER TABLE sessions DROP COLUMN groups;
ALTER TABLE sessions DROP COLUMN tags;
