-- The admin user search matches any part of a username, email or name
-- (ILIKE '%term%'), which a b-tree cannot serve: without these indexes it
-- reads every user. Trigram indexes answer it for terms of three or more
-- characters (shorter ones still scan).
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX users_username_trgm ON users USING gin ((username::text) gin_trgm_ops);
CREATE INDEX users_email_trgm ON users USING gin ((email::text) gin_trgm_ops);
CREATE INDEX users_name_trgm ON users USING gin ((first_name || ' ' || last_name) gin_trgm_ops);
