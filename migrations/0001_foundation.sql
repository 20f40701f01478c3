-- Users known to voxgate, mirrored from Keycloak, with their provisioning
-- state. Constraint names are stable: code maps them to 409 responses.
CREATE EXTENSION IF NOT EXISTS citext;

CREATE FUNCTION set_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at = now();
    RETURN NEW;
END;
$$;

CREATE TABLE users (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    keycloak_id   text,
    username      citext NOT NULL,
    email         citext,
    first_name    text NOT NULL DEFAULT '',
    last_name     text NOT NULL DEFAULT '',
    enabled       boolean NOT NULL DEFAULT true,
    -- pending: provisioning in progress; active: exists in both systems;
    -- failed: provisioning was compensated; deleted: removed from Keycloak.
    status        text NOT NULL DEFAULT 'active',
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    last_login_at timestamptz,
    CONSTRAINT users_keycloak_id_key UNIQUE (keycloak_id),
    CONSTRAINT users_status_check CHECK (status IN ('pending', 'active', 'failed', 'deleted')),
    CONSTRAINT users_username_length CHECK (char_length(username) BETWEEN 1 AND 255),
    CONSTRAINT users_first_name_length CHECK (char_length(first_name) <= 255),
    CONSTRAINT users_last_name_length CHECK (char_length(last_name) <= 255)
);

-- Failed and deleted rows are kept for the audit trail and must not block
-- re-creating the same username or email.
CREATE UNIQUE INDEX users_username_key ON users (username) WHERE status IN ('pending', 'active');
CREATE UNIQUE INDEX users_email_key ON users (email) WHERE status IN ('pending', 'active') AND email IS NOT NULL;
CREATE INDEX users_created_at_idx ON users (created_at, id);

CREATE TRIGGER users_set_updated_at BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE roles (
    name        text PRIMARY KEY,
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT roles_name_format CHECK (name ~ '^[a-z][a-z0-9_-]{0,62}$')
);

INSERT INTO roles (name, description) VALUES
    ('admin', 'Manages users, roles and the audit log.'),
    ('agent', 'Support staff: may use the chat and speech without the daily quota.'),
    ('user',  'Signs in, chats with the bot and hears its replies.');

CREATE TABLE user_roles (
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       text NOT NULL REFERENCES roles (name) ON DELETE RESTRICT,
    granted_by uuid REFERENCES users (id) ON DELETE SET NULL,
    granted_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT user_roles_pkey PRIMARY KEY (user_id, role)
);

CREATE TABLE audit_log (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    -- Actor and target are kept as text as well as ids so the trail survives
    -- deletion of either user.
    actor_id   uuid,
    actor      text NOT NULL,
    action     text NOT NULL,
    target_id  uuid,
    target     text,
    outcome    text NOT NULL,
    request_id text,
    details    jsonb NOT NULL DEFAULT '{}'::jsonb,
    CONSTRAINT audit_log_outcome_check CHECK (outcome IN ('success', 'failure', 'denied'))
);

CREATE INDEX audit_log_at_idx ON audit_log (at DESC, id DESC);
CREATE INDEX audit_log_target_idx ON audit_log (target_id, at DESC);
