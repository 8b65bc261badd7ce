-- How far each member has read each topic (comments and meeting chats): the `seq` of
-- the last message they saw. Topics with messages after it are marked new for them.
CREATE TABLE topic_reads (
    user_id  INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    topic_id INTEGER NOT NULL REFERENCES topics (id) ON DELETE CASCADE,
    last_seq INTEGER NOT NULL,
    PRIMARY KEY (user_id, topic_id)
);
