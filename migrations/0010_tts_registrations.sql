-- Who may hear which registered speech, and whether they have paid for it.
-- A key is heard only by users who registered it, and each user pays
-- once for each key whether or not its audio was already cached, so the
-- shared cache tells nobody what somebody else had spoken.
CREATE TABLE tts_registrations (
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key        text NOT NULL REFERENCES tts_requests (key) ON DELETE CASCADE,
    paid       boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT tts_registrations_pkey PRIMARY KEY (user_id, key)
);
CREATE INDEX tts_registrations_key_idx ON tts_registrations (key);
