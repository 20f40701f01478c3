-- Run once by the postgres image when its data volume is first created
-- (docker-compose.yml mounts this into /docker-entrypoint-initdb.d/):
-- Keycloak gets its own role and database next to voxgate's.
-- DEV ONLY: the password is a development value, like the others in
-- docker-compose.yml.
CREATE ROLE keycloak LOGIN PASSWORD 'dev-only-keycloak-db-password';
CREATE DATABASE keycloak OWNER keycloak;
