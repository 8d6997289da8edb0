-- +goose Up
-- Statements are kept whole up to the gateway's limit (1 MiB by default);
-- long ones are stored deflated here, with query left empty.
ALTER TABLE audit_events ADD COLUMN query_z BLOB;

-- +goose Down
ALTER TABLE audit_events DROP COLUMN query_z;
