-- Each message's position in its room's stream, written in the same
-- transaction as its event: the page reads history from this table (kept
-- forever) up to the stream position, and the stream delivers the rest.
-- The event log itself is trimmed by retention.
ALTER TABLE messages ADD COLUMN event_seq BIGINT;
CREATE INDEX messages_room_position ON messages (room, event_seq);
