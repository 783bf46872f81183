-- eventstream-rocket: the event log (PostgreSQL).
-- One row per channel holds its counter: ids are assigned by incrementing
-- last_id in the same transaction as the insert, so they are gap-free
-- (a sequence would leave holes on rollback).
-- trimmed_through is the highest id retention has deleted: ids after it are
-- all still stored, which is what decides whether a position can be resumed.
CREATE TABLE IF NOT EXISTS eventstream_channels (
    name            TEXT   NOT NULL PRIMARY KEY,
    last_id         BIGINT NOT NULL,
    trimmed_through BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS eventstream_events (
    channel    TEXT   NOT NULL,
    id         BIGINT NOT NULL,
    event_type TEXT   NOT NULL,
    data       TEXT   NOT NULL,
    -- JSON array of user ids this event is not delivered to, or NULL.
    skip_users TEXT,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (channel, id)
);

CREATE INDEX IF NOT EXISTS eventstream_events_created ON eventstream_events (created_ms);
