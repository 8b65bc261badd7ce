-- Recording states and file kinds are closed sets the database checks, and a file's kind
-- is a column rather than a suffix of its name (`-screen.webm`) that code parsed.
-- Kept in step with ../postgres/0006_typed_recordings.sql. SQLite cannot add a CHECK
-- constraint to a table; triggers refuse the same values (ALTER TABLE ... ADD COLUMN
-- with a CHECK does work, for the new column).

ALTER TABLE recording_files ADD COLUMN kind TEXT NOT NULL DEFAULT 'camera'
    CHECK (kind IN ('camera', 'screen'));
UPDATE recording_files SET kind = 'screen' WHERE file_name LIKE '%-screen.webm';

UPDATE recordings SET state = 'failed', reason = COALESCE(reason, 'unknown state ' || state)
WHERE state NOT IN ('recording', 'composing', 'ready', 'failed');

CREATE TRIGGER recordings_state_insert BEFORE INSERT ON recordings
WHEN NEW.state NOT IN ('recording', 'composing', 'ready', 'failed')
BEGIN
    SELECT RAISE(ABORT, 'recordings.state must be recording, composing, ready or failed');
END;

CREATE TRIGGER recordings_state_update BEFORE UPDATE OF state ON recordings
WHEN NEW.state NOT IN ('recording', 'composing', 'ready', 'failed')
BEGIN
    SELECT RAISE(ABORT, 'recordings.state must be recording, composing, ready or failed');
END;
