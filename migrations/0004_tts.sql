-- Speech: what was asked for (by content key), the shared audio cache, and
-- per-user limits. Audio is stored in chunks as it streams in, so a long
-- synthesis never has to sit in memory whole.

CREATE TABLE tts_requests (
    key        text PRIMARY KEY,
    engine     text NOT NULL,
    voice      text NOT NULL,
    language   text NOT NULL,
    format     text NOT NULL,
    engine_kind text NOT NULL,
    text       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tts_cache (
    key            text PRIMARY KEY,
    content_type   text NOT NULL,
    size           bigint NOT NULL DEFAULT 0,
    duration_ms    bigint,
    complete       boolean NOT NULL DEFAULT false,
    -- Only the instance that started an entry may write it; another
    -- instance missing the cache at the same time streams without caching.
    writer         uuid NOT NULL,
    -- Hash of the stored bytes: the ETag of a cached entry.
    etag           text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    last_access_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX tts_cache_lru_idx ON tts_cache (last_access_at) WHERE complete;

CREATE TABLE tts_chunks (
    key    text NOT NULL REFERENCES tts_cache (key) ON DELETE CASCADE,
    seq    integer NOT NULL,
    offset_bytes bigint NOT NULL,
    data   bytea NOT NULL,
    CONSTRAINT tts_chunks_pkey PRIMARY KEY (key, seq)
);

CREATE TABLE tts_usage (
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    day     date NOT NULL,
    chars   bigint NOT NULL DEFAULT 0,
    CONSTRAINT tts_usage_pkey PRIMARY KEY (user_id, day)
);

CREATE TABLE tts_rate (
    user_id      uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    window_start timestamptz NOT NULL,
    count        integer NOT NULL
);
