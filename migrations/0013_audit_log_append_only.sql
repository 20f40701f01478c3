-- The audit log is append-only for the runtime role, and the migration
-- history is the owner's alone: a compromised or buggy instance can add
-- audit records but not rewrite or remove them, nor make an old build look
-- current. scripts/postgres-init-voxgate-app.sql revokes the same for
-- tables that exist when it runs; this covers databases whose tables were
-- created afterwards (the default privileges granted everything) and
-- existing deployments. A runtime role under another name needs the same
-- two statements.
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'voxgate_app') THEN
        REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM voxgate_app;
        REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON _sqlx_migrations FROM voxgate_app;
    END IF;
END
$$;
