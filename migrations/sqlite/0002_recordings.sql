-- Meeting recordings: one row per start/stop, one file per participant.
-- Kept in step with ../postgres/0002_recordings.sql.

CREATE TABLE recordings (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    meeting_id INTEGER NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
    started_by INTEGER NOT NULL REFERENCES users (id),
    started_at INTEGER NOT NULL,
    stopped_at INTEGER,
    -- recording | ready | interrupted | failed
    state      TEXT    NOT NULL,
    reason     TEXT
);
CREATE INDEX recordings_meeting_idx ON recordings (meeting_id, started_at);

CREATE TABLE recording_files (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    recording_id INTEGER NOT NULL REFERENCES recordings (id) ON DELETE CASCADE,
    user_id      INTEGER NOT NULL REFERENCES users (id),
    file_name    TEXT    NOT NULL,
    bytes        INTEGER NOT NULL
);
CREATE INDEX recording_files_recording_idx ON recording_files (recording_id);
