-- eventstream-rocket: append tokens (PostgreSQL).
-- Every append carries a token, unique per writer process (writer_id) and
-- append (append_seq). After a commit whose outcome is unknown (the
-- connection dropped after COMMIT was sent), the writer looks the tokens up
-- instead of guessing; a retry of an event that did commit fails on the
-- unique index instead of storing it twice under a new id.
ALTER TABLE eventstream_events ADD COLUMN IF NOT EXISTS writer_id BIGINT;
ALTER TABLE eventstream_events ADD COLUMN IF NOT EXISTS append_seq BIGINT;
CREATE UNIQUE INDEX IF NOT EXISTS eventstream_events_append
    ON eventstream_events (writer_id, append_seq);
-- The token of each channel's newest event: a stream that read the channel
-- knows which live events it has already seen, so an id at or below its
-- position that comes from a later append means the log went back in time.
ALTER TABLE eventstream_channels ADD COLUMN IF NOT EXISTS last_writer BIGINT;
ALTER TABLE eventstream_channels ADD COLUMN IF NOT EXISTS last_append BIGINT;
