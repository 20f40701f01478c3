-- A session's token refresh is claimed with a short lease instead of a row
-- lock, so no database connection is held while Keycloak answers.
ALTER TABLE sessions ADD COLUMN refreshing_until timestamptz;
