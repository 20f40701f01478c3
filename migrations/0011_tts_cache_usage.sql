-- The audio cache's total size, kept up to date by a trigger, so that
-- finishing an entry checks the bound in constant time and evicts by
-- walking the least-recently-used index from its old end, instead of
-- summing every entry on every miss.
CREATE TABLE tts_cache_usage (
    id    boolean PRIMARY KEY DEFAULT true CHECK (id),
    bytes bigint NOT NULL
);
INSERT INTO tts_cache_usage (bytes)
    SELECT coalesce(sum(size), 0) FROM tts_cache WHERE complete;

CREATE FUNCTION tts_cache_usage_track() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    delta bigint := 0;
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.complete THEN
        delta := delta - OLD.size;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.complete THEN
        delta := delta + NEW.size;
    END IF;
    IF delta <> 0 THEN
        UPDATE tts_cache_usage SET bytes = bytes + delta;
    END IF;
    RETURN NULL;
END
$$;

-- Only changes of size or completeness count: the LRU bookkeeping of a
-- cache hit (last_access_at) does not touch the usage row.
CREATE TRIGGER tts_cache_usage_track
    AFTER INSERT OR UPDATE OF size, complete OR DELETE ON tts_cache
    FOR EACH ROW EXECUTE FUNCTION tts_cache_usage_track();
