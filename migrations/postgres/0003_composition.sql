-- Composing one video of each recording: its progress, the result, and whether the
-- recording was cut short by the server stopping (which used to be a state of its own).
-- Kept in step with ../sqlite/0003_composition.sql.

-- recording | composing | ready | failed
ALTER TABLE recordings ADD COLUMN progress BIGINT NOT NULL DEFAULT 0;
ALTER TABLE recordings ADD COLUMN interrupted BIGINT NOT NULL DEFAULT 0;
-- Size of the composed MP4 once it is written; NULL until then (or if it failed).
ALTER TABLE recordings ADD COLUMN composed_bytes BIGINT;
ALTER TABLE recordings ADD COLUMN duration_ms BIGINT;

UPDATE recordings SET interrupted = 1 WHERE state = 'interrupted';
-- Recordings made before composition existed get their video composed now.
UPDATE recordings SET state = 'composing'
WHERE state IN ('ready', 'interrupted')
  AND EXISTS (SELECT 1 FROM recording_files f WHERE f.recording_id = recordings.id);
UPDATE recordings SET state = 'failed' WHERE state = 'interrupted';
