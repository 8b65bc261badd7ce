-- Edits, deletions and moderation. A topic's events (its messages, and every edit or
-- deletion of one) are numbered by `last_event`, which live streams resume from; a
-- message's `event` is the number of its latest change (its creation at first).
-- `last_seq` still numbers the messages themselves (their anchors, the counts).
ALTER TABLE topics ADD COLUMN last_event BIGINT NOT NULL DEFAULT 0;
ALTER TABLE topics ADD COLUMN edited_at BIGINT;
-- The event of its latest edit: a resumed stream sends the topic again if it is later.
ALTER TABLE topics ADD COLUMN edited_event BIGINT;
ALTER TABLE topics ADD COLUMN locked_at BIGINT;
ALTER TABLE topics ADD COLUMN pinned_at BIGINT;
UPDATE topics SET last_event = last_seq;

ALTER TABLE messages ADD COLUMN event BIGINT NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN edited_at BIGINT;
ALTER TABLE messages ADD COLUMN deleted_at BIGINT;
UPDATE messages SET event = seq;
CREATE INDEX messages_topic_event_idx ON messages (topic_id, event);
