-- The application's own table: every chat message, as posted.
-- (The event log that streams replay from is eventstream-rocket's own,
-- created by its migrations in the same database.)
CREATE TABLE messages (
    id         BIGSERIAL   PRIMARY KEY,
    room       TEXT        NOT NULL,
    author     TEXT        NOT NULL,
    text       TEXT        NOT NULL,
    event_id   TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX messages_room ON messages (room, id);
