-- Speech recognition's meters: recognitions per user and minute, and
-- seconds of speech recognised per user and day (see server/src/limits.rs).
CREATE TABLE stt_usage (
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    day     date NOT NULL,
    seconds bigint NOT NULL DEFAULT 0,
    CONSTRAINT stt_usage_pkey PRIMARY KEY (user_id, day)
);

CREATE TABLE stt_rate (
    user_id      uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    window_start timestamptz NOT NULL,
    count        integer NOT NULL
);
