-- +goose Up
-- Every version of the access rules the server has run with, so that
-- "who could reach orders at T" is answered with the rules of T, and so
-- that the number of permission sets can be compared over time.
CREATE TABLE config_history (
    id              INTEGER PRIMARY KEY,
    loaded          INTEGER NOT NULL,
    digest          TEXT NOT NULL,
    rules           BLOB NOT NULL,
    permission_sets INTEGER NOT NULL,
    assignments     INTEGER NOT NULL,
    people          INTEGER NOT NULL
);
CREATE INDEX config_history_loaded ON config_history (loaded);

-- +goose Down
DROP TABLE config_history;
