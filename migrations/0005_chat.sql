-- The chat: each user's conversation and their speech settings. Messages
-- are numbered by an identity column, which is also the paging cursor.

CREATE TABLE chat_messages (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    author     text NOT NULL,
    body       text NOT NULL,
    -- Where the bot reply's audio is (a SpeechRef); NULL for user messages.
    speech     jsonb,
    follow_ups jsonb NOT NULL DEFAULT '[]'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT chat_messages_author_check CHECK (author IN ('user', 'bot')),
    CONSTRAINT chat_messages_body_length CHECK (char_length(body) <= 20000)
);

CREATE INDEX chat_messages_user_idx ON chat_messages (user_id, id DESC);

CREATE TABLE chat_settings (
    user_id     uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    voice       text,
    language    text,
    autoplay    boolean NOT NULL DEFAULT true,
    speech_rate double precision NOT NULL DEFAULT 1.0,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT chat_settings_rate_range CHECK (speech_rate BETWEEN 0.5 AND 2.0),
    CONSTRAINT chat_settings_voice_length CHECK (char_length(voice) <= 64),
    CONSTRAINT chat_settings_language_length CHECK (char_length(language) <= 35)
);

CREATE TRIGGER chat_settings_set_updated_at BEFORE UPDATE ON chat_settings
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
