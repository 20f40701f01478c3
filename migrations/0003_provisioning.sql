-- Durable state of user provisioning: each saga writes its progress here
-- before touching Keycloak, so a crash can be finished or compensated.
CREATE TABLE provisioning_jobs (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- local_created → keycloak_created → credentials_set → roles_assigned
    -- (then the job row is deleted); compensating while undoing.
    step        text NOT NULL,
    keycloak_id text,
    roles       text[] NOT NULL DEFAULT '{}',
    actor       text NOT NULL,
    actor_id    uuid,
    request_id  text,
    attempts    integer NOT NULL DEFAULT 0,
    last_error  text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT provisioning_jobs_user_key UNIQUE (user_id),
    CONSTRAINT provisioning_jobs_step_check CHECK (step IN
        ('local_created', 'keycloak_created', 'credentials_set', 'roles_assigned', 'compensating'))
);

CREATE TRIGGER provisioning_jobs_set_updated_at BEFORE UPDATE ON provisioning_jobs
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- Idempotency-Key handling for POST /api/admin/users.
CREATE TABLE idempotency_keys (
    actor_key    text NOT NULL,
    key          text NOT NULL,
    request_hash bytea NOT NULL,
    status       smallint,
    response     jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT idempotency_keys_pkey PRIMARY KEY (actor_key, key)
);
