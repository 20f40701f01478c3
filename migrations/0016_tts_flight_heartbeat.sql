-- One synthesis per text across instances. The instance writing an entry
-- beats its heart on the row while it writes, so an instance finding the
-- row claimed follows it from the chunk table instead of synthesizing the
-- same text again, and knows the writer is gone when the beat stops (not
-- after a fixed age, which a long synthesis outlives). Followers on other
-- instances say they are there in `followed_at`, so the writer does not
-- stop for want of listeners it cannot see.
ALTER TABLE tts_cache
    ADD COLUMN beat_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN followed_at timestamptz;
