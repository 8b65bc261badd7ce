-- Users, sign-in sessions, teams, the forum and meetings. Times are Unix milliseconds (UTC).
-- Kept in step with ../sqlite/0001_foundation.sql.

CREATE TABLE users (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider     TEXT    NOT NULL,
    subject      TEXT    NOT NULL,
    display_name TEXT    NOT NULL,
    email        TEXT,
    avatar_url   TEXT,
    created_at   BIGINT  NOT NULL,
    CONSTRAINT users_identity_key UNIQUE (provider, subject)
);

CREATE TABLE sessions (
    token_hash TEXT    PRIMARY KEY,
    user_id    BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT  NOT NULL,
    expires_at BIGINT  NOT NULL
);
CREATE INDEX sessions_user_idx ON sessions (user_id);

CREATE TABLE oauth_logins (
    state         TEXT    PRIMARY KEY,
    provider      TEXT    NOT NULL,
    pkce_verifier TEXT    NOT NULL,
    return_to     TEXT    NOT NULL,
    created_at    BIGINT  NOT NULL
);

CREATE TABLE teams (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        TEXT    NOT NULL,
    invite_code TEXT    NOT NULL,
    created_by  BIGINT  NOT NULL REFERENCES users (id),
    created_at  BIGINT  NOT NULL,
    CONSTRAINT teams_invite_code_key UNIQUE (invite_code)
);

CREATE TABLE memberships (
    team_id   BIGINT  NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    user_id   BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role      TEXT    NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    joined_at BIGINT  NOT NULL,
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX memberships_user_idx ON memberships (user_id);

CREATE TABLE topics (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    team_id          BIGINT  NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    author_id        BIGINT  NOT NULL REFERENCES users (id),
    kind             TEXT    NOT NULL CHECK (kind IN ('post', 'meeting')),
    title            TEXT    NOT NULL,
    body             TEXT    NOT NULL,
    created_at       BIGINT  NOT NULL,
    last_activity_at BIGINT  NOT NULL,
    last_seq         BIGINT  NOT NULL DEFAULT 0
);
CREATE INDEX topics_team_activity_idx ON topics (team_id, last_activity_at DESC, id DESC);

-- Comments on a topic and a meeting's chat alike; seq increases per topic so live
-- streams can resume exactly.
CREATE TABLE messages (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic_id   BIGINT  NOT NULL REFERENCES topics (id) ON DELETE CASCADE,
    seq        BIGINT  NOT NULL,
    author_id  BIGINT  NOT NULL REFERENCES users (id),
    body       TEXT    NOT NULL,
    created_at BIGINT  NOT NULL,
    CONSTRAINT messages_topic_seq_key UNIQUE (topic_id, seq)
);

CREATE TABLE meetings (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    team_id    BIGINT  NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    topic_id   BIGINT  NOT NULL REFERENCES topics (id) ON DELETE CASCADE,
    title      TEXT    NOT NULL,
    created_by BIGINT  NOT NULL REFERENCES users (id),
    started_at BIGINT  NOT NULL,
    ended_at   BIGINT,
    ended_by   BIGINT  REFERENCES users (id)
);
CREATE INDEX meetings_team_idx ON meetings (team_id, started_at DESC);

CREATE TABLE attendance (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    meeting_id BIGINT  NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
    user_id    BIGINT  NOT NULL REFERENCES users (id),
    joined_at  BIGINT  NOT NULL,
    left_at    BIGINT
);
CREATE INDEX attendance_meeting_idx ON attendance (meeting_id, user_id);
