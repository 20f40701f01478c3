-- Browser sessions (backend-for-frontend: tokens never reach the browser),
-- in-flight sign-ins, and how Keycloak roles map to voxgate roles.

CREATE TABLE sessions (
    -- SHA-256 of the cookie value: a database leak does not hand out
    -- usable session cookies.
    id_hash           bytea PRIMARY KEY,
    user_id           uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    keycloak_sid      text,
    csrf_token        text NOT NULL,
    id_token          text NOT NULL,
    access_token      text NOT NULL,
    refresh_token     text,
    access_expires_at timestamptz NOT NULL,
    keycloak_roles    text[] NOT NULL DEFAULT '{}',
    created_at        timestamptz NOT NULL DEFAULT now(),
    last_seen_at      timestamptz NOT NULL DEFAULT now(),
    expires_at        timestamptz NOT NULL
);

CREATE INDEX sessions_keycloak_sid_idx ON sessions (keycloak_sid);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);
CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);

CREATE TABLE login_flows (
    state         text PRIMARY KEY,
    -- Binds the flow to the browser that started it (login CSRF).
    browser_hash  bytea NOT NULL,
    nonce         text NOT NULL,
    pkce_verifier text NOT NULL,
    return_to     text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE role_mappings (
    -- realm: a Keycloak realm role; client: a role of our OIDC client.
    source        text NOT NULL,
    keycloak_role text NOT NULL,
    app_role      text NOT NULL REFERENCES roles (name) ON DELETE CASCADE,
    CONSTRAINT role_mappings_pkey PRIMARY KEY (source, keycloak_role, app_role),
    CONSTRAINT role_mappings_source_check CHECK (source IN ('realm', 'client'))
);

INSERT INTO role_mappings (source, keycloak_role, app_role) VALUES
    ('realm', 'admin', 'admin'),
    ('realm', 'agent', 'agent'),
    ('realm', 'user', 'user');
