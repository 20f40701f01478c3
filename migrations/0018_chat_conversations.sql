-- Several conversations per user. A conversation's title comes from its
-- first message until the user renames it (NULL: no message yet, shown as
-- "New conversation"). `updated_at` is the last message or rename: the
-- list is ordered by it, newest first.
CREATE TABLE chat_conversations (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title      text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT chat_conversations_title_length CHECK (char_length(title) BETWEEN 1 AND 200)
);

CREATE INDEX chat_conversations_user_idx ON chat_conversations (user_id, updated_at DESC, id DESC);

ALTER TABLE chat_messages
    ADD COLUMN conversation_id uuid REFERENCES chat_conversations (id) ON DELETE CASCADE;

-- The single history each user had becomes their first conversation,
-- titled by its first message as a new one would be.
INSERT INTO chat_conversations (user_id, title, created_at, updated_at)
SELECT m.user_id,
       (SELECT left(regexp_replace(btrim(f.body), '\s+', ' ', 'g'), 60)
          FROM chat_messages f
         WHERE f.user_id = m.user_id AND f.author = 'user' AND btrim(f.body) <> ''
         ORDER BY f.id LIMIT 1),
       min(m.created_at),
       max(m.created_at)
  FROM chat_messages m
 GROUP BY m.user_id;

UPDATE chat_messages m
   SET conversation_id = c.id
  FROM chat_conversations c
 WHERE c.user_id = m.user_id;

ALTER TABLE chat_messages ALTER COLUMN conversation_id SET NOT NULL;

CREATE INDEX chat_messages_conversation_idx ON chat_messages (conversation_id, id DESC);
-- Searching one's own messages by any part of a word (pg_trgm, as the
-- admin user search).
CREATE INDEX chat_messages_body_trgm_idx ON chat_messages USING gin (body gin_trgm_ops);
