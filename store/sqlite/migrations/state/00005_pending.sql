-- +goose Up
-- Pending sign-in state: device flows, sign-in attempts and assertions
-- already used, which last minutes. The rowid orders entries that expire
-- at the same moment by when they came.
CREATE TABLE pending (
    kind    TEXT NOT NULL,
    key     TEXT NOT NULL,
    value   BLOB NOT NULL,
    expires INTEGER NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE INDEX pending_expires ON pending (kind, expires);

-- +goose Down
DROP TABLE pending;
