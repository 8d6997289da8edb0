-- +goose Up
CREATE TABLE users (
    id           TEXT PRIMARY KEY,
    user_name    TEXT NOT NULL,
    email        TEXT NOT NULL DEFAULT '',
    display_name TEXT NOT NULL DEFAULT '',
    external_id  TEXT NOT NULL DEFAULT '',
    active       INTEGER NOT NULL,
    attributes   TEXT NOT NULL DEFAULT '{}',
    created      INTEGER NOT NULL,
    modified     INTEGER NOT NULL,
    version      INTEGER NOT NULL
);
CREATE UNIQUE INDEX users_user_name ON users (user_name COLLATE NOCASE);
CREATE INDEX users_external_id ON users (external_id) WHERE external_id <> '';

CREATE TABLE groups (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    external_id TEXT NOT NULL DEFAULT '',
    created     INTEGER NOT NULL,
    modified    INTEGER NOT NULL,
    version     INTEGER NOT NULL
);
CREATE UNIQUE INDEX groups_name ON groups (name COLLATE NOCASE);

CREATE TABLE members (
    group_id TEXT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    user_id  TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
) WITHOUT ROWID;
CREATE INDEX members_user ON members (user_id);

-- membership_history keeps names as they were, so it still answers after a
-- user or group is deleted.
CREATE TABLE membership_history (
    id          INTEGER PRIMARY KEY,
    group_id    TEXT NOT NULL,
    group_name  TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    user_name   TEXT NOT NULL,
    joined      INTEGER NOT NULL,
    joined_by   TEXT NOT NULL,
    left_at     INTEGER,
    left_by     TEXT
);
CREATE INDEX membership_history_group ON membership_history (group_id);
CREATE INDEX membership_history_group_name ON membership_history (group_name COLLATE NOCASE);
CREATE INDEX membership_history_open ON membership_history (group_id, user_id) WHERE left_at IS NULL;

CREATE TABLE sessions (
    id          TEXT PRIMARY KEY,
    secret_hash BLOB NOT NULL UNIQUE,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created     INTEGER NOT NULL,
    expires     INTEGER NOT NULL,
    revoked     INTEGER,
    source      TEXT NOT NULL DEFAULT '',
    mfa         INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX sessions_user ON sessions (user_id);

-- +goose Down
DROP TABLE sessions;
DROP TABLE membership_history;
DROP TABLE members;
DROP TABLE groups;
DROP TABLE users;
