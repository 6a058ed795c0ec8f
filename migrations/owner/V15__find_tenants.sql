-- "Which workspaces am I in?": an index of the emails of every tenant's users (accounts
-- stay in the tenant databases; this holds only who is where), kept up to date by the
-- tenant API and rebuilt by `control-plane tenants reindex-users`, and the one-time codes
-- that prove a caller reads the mail of an address before its tenants are listed.
CREATE TABLE tenant_user_emails (
    email      text NOT NULL CHECK (email = lower(email)),
    tenant_id  uuid NOT NULL REFERENCES tenants (id),
    PRIMARY KEY (email, tenant_id)
);
CREATE INDEX tenant_user_emails_tenant ON tenant_user_emails (tenant_id);

-- A code is kept only as an HMAC; one is made for every request, known address or not,
-- so the answer and the work done do not tell which addresses have accounts.
CREATE TABLE find_tenant_codes (
    id          uuid PRIMARY KEY,
    email       text NOT NULL CHECK (email = lower(email)),
    code_hash   bytea NOT NULL,
    attempts    integer NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE INDEX find_tenant_codes_email ON find_tenant_codes (email, created_at DESC);
