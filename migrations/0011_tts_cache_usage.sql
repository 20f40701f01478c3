-- The audio cache's total size, kept up to date by triggers, so that
-- finishing an entry checks the bound in constant time and evicts by
-- walking the least-recently-used index from its old end, instead of
-- summing every entry on every miss.
CREATE TABLE tts_cache_usage (
    id    boolean PRIMARY KEY DEFAULT true CHECK (id),
    bytes bigint NOT NULL
);
INSERT INTO tts_cache_usage (bytes)
    SELECT coalesce(sum(size), 0) FROM tts_cache WHERE complete;

-- Once per statement, from its transition tables: a statement touching many
-- entries (an eviction, a bulk load) updates the usage row once, not once
-- per entry. Only complete entries count.
CREATE FUNCTION tts_cache_usage_track() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    delta bigint := 0;
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        delta := delta - coalesce((SELECT sum(size) FROM old_rows WHERE complete), 0);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        delta := delta + coalesce((SELECT sum(size) FROM new_rows WHERE complete), 0);
    END IF;
    IF delta <> 0 THEN
        UPDATE tts_cache_usage SET bytes = bytes + delta WHERE id;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER tts_cache_usage_insert AFTER INSERT ON tts_cache
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tts_cache_usage_track();
CREATE TRIGGER tts_cache_usage_update AFTER UPDATE ON tts_cache
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tts_cache_usage_track();
CREATE TRIGGER tts_cache_usage_delete AFTER DELETE ON tts_cache
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tts_cache_usage_track();
