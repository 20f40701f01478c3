-- The Keycloak realm roles a user had at their last sign-in (or as last set
-- through voxgate), so admin views show roles granted in Keycloak too.
ALTER TABLE users ADD COLUMN keycloak_roles text[] NOT NULL DEFAULT '{}';
