-- eventstream-rocket: append tokens (SQLite).
-- Every append carries a token, unique per writer process (writer_id) and
-- append (append_seq). After a commit whose outcome is unknown, the writer
-- looks the tokens up instead of guessing; a retry of an event that did
-- commit fails on the unique index instead of storing it twice.
ALTER TABLE eventstream_events ADD COLUMN writer_id INTEGER;
ALTER TABLE eventstream_events ADD COLUMN append_seq INTEGER;
CREATE UNIQUE INDEX IF NOT EXISTS eventstream_events_append
    ON eventstream_events (writer_id, append_seq);
-- The token of each channel's newest event: a stream that read the channel
-- knows which live events it has already seen, so an id at or below its
-- position that comes from a later append means the log went back in time.
ALTER TABLE eventstream_channels ADD COLUMN last_writer INTEGER;
ALTER TABLE eventstream_channels ADD COLUMN last_append INTEGER;
