-- Meeting recordings: one row per start/stop, one file per participant.
-- Kept in step with ../sqlite/0002_recordings.sql.

CREATE TABLE recordings (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    meeting_id BIGINT  NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
    started_by BIGINT  NOT NULL REFERENCES users (id),
    started_at BIGINT  NOT NULL,
    stopped_at BIGINT,
    -- recording | ready | interrupted | failed
    state      TEXT    NOT NULL,
    reason     TEXT
);
CREATE INDEX recordings_meeting_idx ON recordings (meeting_id, started_at);

CREATE TABLE recording_files (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    recording_id BIGINT  NOT NULL REFERENCES recordings (id) ON DELETE CASCADE,
    user_id      BIGINT  NOT NULL REFERENCES users (id),
    file_name    TEXT    NOT NULL,
    bytes        BIGINT  NOT NULL
);
CREATE INDEX recording_files_recording_idx ON recording_files (recording_id);
