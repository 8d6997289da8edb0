-- +goose Up
-- Pending sign-in state: device flows, sign-in attempts and assertions
-- already used, which last minutes. A sign-in may start on one server and
-- finish on another.
CREATE TABLE pending (
    -- Orders entries that expire at the same moment by when they came.
    id      bigint GENERATED ALWAYS AS IDENTITY,
    kind    text NOT NULL,
    key     text NOT NULL,
    value   bytea NOT NULL,
    expires bigint NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE INDEX pending_expires ON pending (kind, expires);

-- +goose Down
DROP TABLE pending;
