-- +goose Up
-- The audit log lives in its own file: it is written thousands of times a
-- second, and every write would otherwise invalidate the page cache that the
-- identity lookups on each connection depend on.
CREATE TABLE audit_events (
    seq        INTEGER PRIMARY KEY,
    time       INTEGER NOT NULL,
    type       TEXT NOT NULL,
    actor      TEXT NOT NULL DEFAULT '',
    user_name  TEXT NOT NULL DEFAULT '',
    database   TEXT NOT NULL DEFAULT '',
    access     TEXT NOT NULL DEFAULT '',
    client     TEXT NOT NULL DEFAULT '',
    session_id TEXT NOT NULL DEFAULT '',
    query      TEXT NOT NULL DEFAULT '',
    reason     TEXT NOT NULL DEFAULT '',
    detail     TEXT NOT NULL DEFAULT '',
    prev_hash  BLOB NOT NULL,
    hash       BLOB NOT NULL
);
CREATE INDEX audit_events_time ON audit_events (time);
CREATE INDEX audit_events_user ON audit_events (user_name, time);
CREATE INDEX audit_events_database ON audit_events (database, time);

-- The audit log is append-only: the database itself refuses edits.
-- +goose StatementBegin
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;
-- +goose StatementEnd

-- +goose Down
DROP TABLE audit_events;
