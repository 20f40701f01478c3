-- A registration that is paid is not yet heard: `POST /api/tts` charges at
-- once, and the user's first GET must still look like a fresh synthesis
-- whether or not somebody else's audio is cached. `heard` is set when a
-- user's hearing has delivered every byte; only then is a GET a `hit`.
-- `marks_paid`: Polly's speech marks are billed once per user and key,
-- cached or not, so the quota tells nobody that someone fetched them before.
-- Registrations paid before this migration count as heard (which of them
-- were cannot be told now).
ALTER TABLE tts_registrations
    ADD COLUMN heard boolean NOT NULL DEFAULT false,
    ADD COLUMN marks_paid boolean NOT NULL DEFAULT false;
UPDATE tts_registrations SET heard = paid;
