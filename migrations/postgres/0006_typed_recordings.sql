-- Recording states and file kinds are closed sets the database checks, and a file's kind
-- is a column rather than a suffix of its name (`-screen.webm`) that code parsed.
-- Kept in step with ../sqlite/0006_typed_recordings.sql.

ALTER TABLE recording_files ADD COLUMN kind TEXT NOT NULL DEFAULT 'camera'
    CHECK (kind IN ('camera', 'screen'));
UPDATE recording_files SET kind = 'screen' WHERE file_name LIKE '%-screen.webm';

UPDATE recordings SET state = 'failed', reason = COALESCE(reason, 'unknown state ' || state)
WHERE state NOT IN ('recording', 'composing', 'ready', 'failed');

ALTER TABLE recordings ADD CONSTRAINT recordings_state_check
    CHECK (state IN ('recording', 'composing', 'ready', 'failed'));
