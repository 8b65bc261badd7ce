-- At most one recording under way per meeting, and one open attendance per person and
-- meeting, whatever requests race: the database refuses the second, and the code maps
-- the refusal to a clear answer (it used to check first, then act).
-- Kept in step with ../postgres/0005_one_active.sql.

-- Rows a race made before this migration: keep the newest of each, end the others.
UPDATE recordings SET state = 'failed', interrupted = 1, reason = 'a second recording started by a race'
WHERE state = 'recording'
  AND id NOT IN (SELECT MAX(id) FROM recordings WHERE state = 'recording' GROUP BY meeting_id);
UPDATE attendance SET left_at = joined_at
WHERE left_at IS NULL
  AND id NOT IN (SELECT MAX(id) FROM attendance WHERE left_at IS NULL GROUP BY meeting_id, user_id);

CREATE UNIQUE INDEX recordings_one_active_idx ON recordings (meeting_id) WHERE state = 'recording';
CREATE UNIQUE INDEX attendance_one_open_idx ON attendance (meeting_id, user_id) WHERE left_at IS NULL;
