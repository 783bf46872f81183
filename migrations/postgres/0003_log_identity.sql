-- eventstream-rocket: the event log's identity (PostgreSQL).
-- A random id, written once when the log is created. Instances that share
-- this log derive their bus channel from it (with bus_key), so they hear
-- each other and no other deployment: NOTIFY channels belong to the
-- database, not to a schema, and Redis ignores db numbers.
CREATE TABLE IF NOT EXISTS eventstream_log (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    log_id TEXT NOT NULL
);
INSERT INTO eventstream_log (singleton, log_id)
    VALUES (1, replace(gen_random_uuid()::text, '-', ''))
    ON CONFLICT (singleton) DO NOTHING;
