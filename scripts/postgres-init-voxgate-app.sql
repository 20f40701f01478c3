-- voxgate's runtime role: it reads and writes rows and changes no schema.
-- `voxgate migrate` runs as the database owner (docker-compose.yml's
-- voxgate-migrate one-shot); `voxgate serve` connects as voxgate_app with
-- VOXGATE_DATABASE_MIGRATE=false. Run in voxgate's database by its owner:
-- the postgres image runs it when its data volume is first created, before
-- any table exists, so the default privileges below cover the tables the
-- owner's migrations create later; the GRANTs cover tables that already
-- exist (a test applies this file to a migrated database).
-- DEV ONLY: the password is a development value, like the others in
-- docker-compose.yml.
-- An existing role is kept as it is (and the owner then needs no right to
-- create roles).
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'voxgate_app') THEN
        CREATE ROLE voxgate_app LOGIN PASSWORD 'dev-only-voxgate-app-password';
    END IF;
END
$$;
GRANT USAGE ON SCHEMA public TO voxgate_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO voxgate_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO voxgate_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO voxgate_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO voxgate_app;
-- The audit log is append-only for the runtime role and the migration
-- history is the owner's (migration 0013 does the same for tables created
-- after this runs).
DO $$
BEGIN
    IF to_regclass('public.audit_log') IS NOT NULL THEN
        REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM voxgate_app;
    END IF;
    IF to_regclass('public._sqlx_migrations') IS NOT NULL THEN
        REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON _sqlx_migrations FROM voxgate_app;
    END IF;
END
$$;
