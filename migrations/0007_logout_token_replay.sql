-- Back-channel logout tokens already used, remembered until they expire so
-- that a replayed token is refused (OpenID Connect Back-Channel Logout 1.0,
-- section 2.6). Shared by every instance; expired rows are swept.
CREATE TABLE logout_token_jtis (
    issuer text NOT NULL,
    jti text NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (issuer, jti)
);
CREATE INDEX logout_token_jtis_expires_at ON logout_token_jtis (expires_at);
