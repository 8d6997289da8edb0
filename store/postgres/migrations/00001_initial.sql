-- +goose Up
-- Times are kept as bigint nanoseconds since the epoch, not timestamptz:
-- timestamptz keeps microseconds, and the audit hash and "who could reach
-- what at T" need the nanosecond a writer gave.
--
-- Names are unique and looked up ignoring case the way the SQLite store
-- does (ASCII only), whatever the database's collation: lower() under the
-- "C" collation folds A-Z and nothing else.
CREATE TABLE users (
    id           text PRIMARY KEY,
    user_name    text NOT NULL,
    email        text NOT NULL DEFAULT '',
    display_name text NOT NULL DEFAULT '',
    external_id  text NOT NULL DEFAULT '',
    active       boolean NOT NULL,
    attributes   text NOT NULL DEFAULT '{}',
    -- The provisioning system's record of the person, byte for byte.
    profile      bytea,
    created      bigint NOT NULL,
    modified     bigint NOT NULL,
    version      bigint NOT NULL
);
CREATE UNIQUE INDEX users_user_name ON users (lower(user_name COLLATE "C"));
CREATE INDEX users_external_id ON users (external_id) WHERE external_id <> '';
CREATE INDEX users_email ON users (lower(email COLLATE "C"));
CREATE INDEX users_created ON users (created, id);

CREATE TABLE groups (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    external_id text NOT NULL DEFAULT '',
    created     bigint NOT NULL,
    modified    bigint NOT NULL,
    version     bigint NOT NULL
);
CREATE UNIQUE INDEX groups_name ON groups (lower(name COLLATE "C"));
CREATE INDEX groups_created ON groups (created, id);

CREATE TABLE members (
    group_id text NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    user_id  text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX members_user ON members (user_id);

-- membership_history keeps names as they were, so it still answers after a
-- user or group is deleted.
CREATE TABLE membership_history (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_id   text NOT NULL,
    group_name text NOT NULL,
    user_id    text NOT NULL,
    user_name  text NOT NULL,
    joined     bigint NOT NULL,
    joined_by  text NOT NULL,
    left_at    bigint,
    left_by    text
);
CREATE INDEX membership_history_group ON membership_history (group_id);
CREATE INDEX membership_history_group_name ON membership_history (lower(group_name COLLATE "C"));
CREATE INDEX membership_history_open ON membership_history (group_id, user_id) WHERE left_at IS NULL;
CREATE INDEX membership_history_user_open ON membership_history (user_id) WHERE left_at IS NULL;

CREATE TABLE sessions (
    id          text PRIMARY KEY,
    secret_hash bytea NOT NULL UNIQUE,
    user_id     text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created     bigint NOT NULL,
    expires     bigint NOT NULL,
    revoked     bigint,
    source      text NOT NULL DEFAULT '',
    mfa         boolean NOT NULL DEFAULT false,
    tags        text NOT NULL DEFAULT '{}',
    groups      text NOT NULL DEFAULT '[]'
);
CREATE INDEX sessions_user ON sessions (user_id);

-- Only hashes are kept; a revoked token stays for the audit trail and
-- frees its name.
CREATE TABLE provisioning_tokens (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    secret_hash bytea NOT NULL UNIQUE,
    created     bigint NOT NULL,
    expires     bigint,
    revoked     bigint,
    last_used   bigint
);
CREATE UNIQUE INDEX provisioning_tokens_active_name ON provisioning_tokens (name) WHERE revoked IS NULL;

CREATE TABLE config_history (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    loaded          bigint NOT NULL,
    digest          text NOT NULL,
    rules           bytea NOT NULL,
    permission_sets integer NOT NULL,
    assignments     integer NOT NULL,
    people          integer NOT NULL
);
CREATE INDEX config_history_loaded ON config_history (loaded);

-- The audit log. Every field is bytea: a client's application name or
-- statement may be any bytes (a NUL, invalid UTF-8) and must come back as
-- it went in, since the hash covers it. user_fold is the user name with
-- A-Z folded, for the case-insensitive filter. PostgreSQL compresses long
-- values itself (TOAST), so statements are not deflated here.
--
-- Each server appends to a chain of its own (chain, chain_seq); seq is the
-- position in the whole log, taken from audit_head as each append's first
-- step, so that the row lock orders positions as the commits are ordered:
-- a reader that has seen position p has seen every one before it.
CREATE TABLE audit_events (
    seq        bigint PRIMARY KEY,
    chain      text NOT NULL,
    chain_seq  bigint NOT NULL,
    time       bigint NOT NULL,
    type       bytea NOT NULL,
    actor      bytea NOT NULL,
    user_name  bytea NOT NULL,
    user_fold  bytea NOT NULL,
    database   bytea NOT NULL,
    access     bytea NOT NULL,
    client     bytea NOT NULL,
    session_id bytea NOT NULL,
    query      bytea NOT NULL,
    reason     bytea NOT NULL,
    detail     bytea NOT NULL,
    prev_hash  bytea NOT NULL,
    hash       bytea NOT NULL
);
CREATE UNIQUE INDEX audit_events_chain ON audit_events (chain, chain_seq);
CREATE INDEX audit_events_time ON audit_events (time);
CREATE INDEX audit_events_user ON audit_events (user_fold, time);
CREATE INDEX audit_events_database ON audit_events (database, time);

-- The audit log is append-only: the database itself refuses edits.
-- +goose StatementBegin
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only';
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER audit_events_no_change BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();

CREATE TABLE audit_head (
    id  integer PRIMARY KEY CHECK (id = 1),
    seq bigint NOT NULL
);
INSERT INTO audit_head (id, seq) VALUES (1, 0);

-- Secrets the servers share (signing keys, the CA, the admin credential),
-- sealed by keygate with the operator's key before they reach the
-- database. version counts writes, for compare-and-swap.
CREATE TABLE secrets (
    name    text PRIMARY KEY,
    sealed  bytea NOT NULL,
    version bigint NOT NULL
);

-- The upstream backends each server opened, so that the others' watchers
-- do not take them for logins around the gateway.
CREATE TABLE upstream_backends (
    address text NOT NULL,
    pid     bigint NOT NULL,
    node    text NOT NULL,
    claimed bigint NOT NULL,
    PRIMARY KEY (address, pid)
);

-- The change feed. Every write transaction that changes something a
-- gateway cares about takes the next revision as its last step, so the
-- row lock on feed_revision orders revisions as the commits are ordered:
-- a reader that has seen revision r has seen every revision before it.
CREATE TABLE feed_revision (
    id  integer PRIMARY KEY CHECK (id = 1),
    rev bigint NOT NULL
);
INSERT INTO feed_revision (id, rev) VALUES (1, 0);

CREATE TABLE feed_changes (
    rev        bigint NOT NULL,
    n          integer NOT NULL,
    kind       smallint NOT NULL,
    user_name  text NOT NULL,
    group_name text NOT NULL,
    -- when the writer committed it, by the writer's clock (nanoseconds)
    at         bigint NOT NULL,
    -- when the database stored it, for pruning
    stored     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (rev, n)
);
CREATE INDEX feed_changes_stored ON feed_changes (stored);

-- +goose Down
DROP TABLE feed_changes;
DROP TABLE feed_revision;
DROP TABLE upstream_backends;
DROP TABLE secrets;
DROP TABLE audit_head;
DROP TABLE audit_events;
DROP FUNCTION audit_events_append_only();
DROP TABLE config_history;
DROP TABLE provisioning_tokens;
DROP TABLE sessions;
DROP TABLE membership_history;
DROP TABLE members;
DROP TABLE groups;
DROP TABLE users;
