-- Control over replies: a reply names the message it answers (so a stop
-- or a regeneration finds it), and a reply the user stopped while it was
-- written keeps what was said, marked as stopped.
ALTER TABLE chat_messages
    ADD COLUMN reply_to bigint REFERENCES chat_messages (id) ON DELETE CASCADE,
    ADD COLUMN stopped  boolean NOT NULL DEFAULT false;

CREATE INDEX chat_messages_reply_to_idx ON chat_messages (reply_to) WHERE reply_to IS NOT NULL;
