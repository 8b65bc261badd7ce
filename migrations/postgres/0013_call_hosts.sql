-- Large meetings are run by their hosts (the meeting's creator and the team's admins):
-- how a meeting admits people, and who was let in from its lobby or removed from it.
-- `ask_to_join`: newcomers wait until a host lets them in; `quiet_above`: above this many
-- people newcomers join muted with their camera off.
ALTER TABLE meetings ADD COLUMN ask_to_join BIGINT NOT NULL DEFAULT 0;
ALTER TABLE meetings ADD COLUMN quiet_above BIGINT NOT NULL DEFAULT 10;
CREATE TABLE meeting_access (
    meeting_id  BIGINT NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
    user_id     BIGINT  NOT NULL REFERENCES users (id),
    admitted_at BIGINT,
    admitted_by BIGINT  REFERENCES users (id),
    removed_at  BIGINT,
    removed_by  BIGINT  REFERENCES users (id),
    PRIMARY KEY (meeting_id, user_id)
);
