-- eventstream-rocket: the event log's identity (SQLite).
-- A random id, written once when the log is created. Instances that share
-- this log derive their bus channel from it (with bus_key), so they hear
-- each other and no other deployment on the same Redis server.
CREATE TABLE IF NOT EXISTS eventstream_log (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    log_id TEXT NOT NULL
);
INSERT INTO eventstream_log (singleton, log_id)
    VALUES (1, lower(hex(randomblob(16))))
    ON CONFLICT (singleton) DO NOTHING;
