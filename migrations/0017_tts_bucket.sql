-- Finished audio may live in an S3 bucket, Postgres keeping the index.
-- `bucket_object` names the object (NULL: the chunks in tts_chunks are the
-- audio). Every upload has a name of its own (the key, the entry's hash and
-- a unique part), so no object waiting for deletion is ever named again.
-- `moved_at`: when the chunks became redundant; they are deleted a little
-- later, so a stream reading them when the entry moved can finish.
ALTER TABLE tts_cache
    ADD COLUMN bucket_object text,
    ADD COLUMN moved_at timestamptz;

-- Entries still in Postgres, oldest first: what a move to the bucket
-- works through.
CREATE INDEX tts_cache_in_postgres_idx ON tts_cache (created_at)
    WHERE complete AND bucket_object IS NULL;
CREATE INDEX tts_cache_moved_idx ON tts_cache (moved_at)
    WHERE moved_at IS NOT NULL;

-- Objects whose entries are gone (evicted, discarded), to be deleted from
-- the bucket. Filled by a trigger, so every way an entry is deleted (the
-- eviction, a damaged entry, an operator's DELETE) leaves nothing behind.
CREATE TABLE tts_bucket_trash (
    object     text PRIMARY KEY,
    trashed_at timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION tts_bucket_trash_track() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tts_bucket_trash (object)
        SELECT bucket_object FROM old_rows WHERE bucket_object IS NOT NULL
        ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;

CREATE TRIGGER tts_bucket_trash_delete AFTER DELETE ON tts_cache
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tts_bucket_trash_track();
