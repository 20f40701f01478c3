-- Chat limits, like speech's: messages per minute, and a daily budget of
-- characters exchanged with the language model.
CREATE TABLE chat_rate (
    user_id      uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    window_start timestamptz NOT NULL,
    count        integer NOT NULL
);

CREATE TABLE llm_usage (
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    day     date NOT NULL,
    chars   bigint NOT NULL DEFAULT 0,
    CONSTRAINT llm_usage_pkey PRIMARY KEY (user_id, day)
);

-- The sweep keeps registered speech that a stored reply still points at.
CREATE INDEX chat_messages_speech_key_idx ON chat_messages ((speech ->> 'key'))
    WHERE speech IS NOT NULL;
CREATE INDEX tts_requests_created_at_idx ON tts_requests (created_at);
