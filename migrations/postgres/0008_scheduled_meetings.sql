-- Meetings planned ahead: in the team's calendar (a private feed per team) until
-- someone starts them, when they become the usual live meeting (`meeting_id`).
-- `sequence` counts the changes calendars are told of (RFC 5545 SEQUENCE).
CREATE TABLE scheduled_meetings (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    team_id          BIGINT  NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    title            TEXT    NOT NULL,
    description      TEXT    NOT NULL DEFAULT '',
    starts_at        BIGINT  NOT NULL,
    duration_minutes BIGINT  NOT NULL,
    time_zone        TEXT    NOT NULL,
    created_by       BIGINT  NOT NULL REFERENCES users (id),
    created_at       BIGINT  NOT NULL,
    sequence         BIGINT  NOT NULL DEFAULT 0,
    cancelled_at     BIGINT,
    meeting_id       BIGINT  REFERENCES meetings (id) ON DELETE SET NULL
);
CREATE INDEX scheduled_meetings_team_idx ON scheduled_meetings (team_id, starts_at);

-- The secret in a team's calendar feed address (None until first asked for).
ALTER TABLE teams ADD COLUMN calendar_secret TEXT;
CREATE UNIQUE INDEX teams_calendar_secret_idx ON teams (calendar_secret);
