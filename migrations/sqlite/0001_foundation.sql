-- Users, sign-in sessions, teams, the forum and meetings. Times are Unix milliseconds (UTC).
-- Kept in step with ../postgres/0001_foundation.sql.

CREATE TABLE users (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    provider     TEXT    NOT NULL,
    subject      TEXT    NOT NULL,
    display_name TEXT    NOT NULL,
    email        TEXT,
    avatar_url   TEXT,
    created_at   INTEGER NOT NULL,
    CONSTRAINT users_identity_key UNIQUE (provider, subject)
);

CREATE TABLE sessions (
    token_hash TEXT    PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX sessions_user_idx ON sessions (user_id);

CREATE TABLE oauth_logins (
    state         TEXT    PRIMARY KEY,
    provider      TEXT    NOT NULL,
    pkce_verifier TEXT    NOT NULL,
    return_to     TEXT    NOT NULL,
    created_at    INTEGER NOT NULL
);

CREATE TABLE teams (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL,
    invite_code TEXT    NOT NULL,
    created_by  INTEGER NOT NULL REFERENCES users (id),
    created_at  INTEGER NOT NULL,
    CONSTRAINT teams_invite_code_key UNIQUE (invite_code)
);

CREATE TABLE memberships (
    team_id   INTEGER NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    user_id   INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role      TEXT    NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    joined_at INTEGER NOT NULL,
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX memberships_user_idx ON memberships (user_id);

CREATE TABLE topics (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    team_id          INTEGER NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    author_id        INTEGER NOT NULL REFERENCES users (id),
    kind             TEXT    NOT NULL CHECK (kind IN ('post', 'meeting')),
    title            TEXT    NOT NULL,
    body             TEXT    NOT NULL,
    created_at       INTEGER NOT NULL,
    last_activity_at INTEGER NOT NULL,
    last_seq         INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX topics_team_activity_idx ON topics (team_id, last_activity_at DESC, id DESC);

-- Comments on a topic and a meeting's chat alike; seq increases per topic so live
-- streams can resume exactly.
CREATE TABLE messages (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    topic_id   INTEGER NOT NULL REFERENCES topics (id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    author_id  INTEGER NOT NULL REFERENCES users (id),
    body       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    CONSTRAINT messages_topic_seq_key UNIQUE (topic_id, seq)
);

CREATE TABLE meetings (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    team_id    INTEGER NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    topic_id   INTEGER NOT NULL REFERENCES topics (id) ON DELETE CASCADE,
    title      TEXT    NOT NULL,
    created_by INTEGER NOT NULL REFERENCES users (id),
    started_at INTEGER NOT NULL,
    ended_at   INTEGER,
    ended_by   INTEGER REFERENCES users (id)
);
CREATE INDEX meetings_team_idx ON meetings (team_id, started_at DESC);

CREATE TABLE attendance (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    meeting_id INTEGER NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
    user_id    INTEGER NOT NULL REFERENCES users (id),
    joined_at  INTEGER NOT NULL,
    left_at    INTEGER
);
CREATE INDEX attendance_meeting_idx ON attendance (meeting_id, user_id);
