-- Meetings planned ahead: in the team's calendar (a private feed per team) until
-- someone starts them, when they become the usual live meeting (`meeting_id`).
-- `sequence` counts the changes calendars are told of (RFC 5545 SEQUENCE).
CREATE TABLE scheduled_meetings (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    team_id          INTEGER NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    title            TEXT    NOT NULL,
    description      TEXT    NOT NULL DEFAULT '',
    starts_at        INTEGER NOT NULL,
    duration_minutes INTEGER NOT NULL,
    time_zone        TEXT    NOT NULL,
    created_by       INTEGER NOT NULL REFERENCES users (id),
    created_at       INTEGER NOT NULL,
    sequence         INTEGER NOT NULL DEFAULT 0,
    cancelled_at     INTEGER,
    meeting_id       INTEGER REFERENCES meetings (id) ON DELETE SET NULL
);
CREATE INDEX scheduled_meetings_team_idx ON scheduled_meetings (team_id, starts_at);

-- The secret in a team's calendar feed address (None until first asked for).
ALTER TABLE teams ADD COLUMN calendar_secret TEXT;
CREATE UNIQUE INDEX teams_calendar_secret_idx ON teams (calendar_secret);
