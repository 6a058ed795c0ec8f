-- The owner database: the control plane's own records. Tenant data never lives here;
-- each tenant has its own database on one of the database_servers.

-- One row per PostgreSQL server that can hold tenant databases. For now the service
-- keeps it in step with CP_ADMIN_DATABASE_URL at start-up; a later change spreads
-- tenants over several servers. Credentials are never stored here.
CREATE TABLE database_servers (
    id          text PRIMARY KEY,
    host        text NOT NULL,
    port        integer NOT NULL CHECK (port BETWEEN 1 AND 65535),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Plans carry the limits the gateway enforces. NULL limit = unlimited.
CREATE TABLE subscription_plans (
    code                 text PRIMARY KEY,
    name                 text NOT NULL,
    max_users            integer,
    max_storage_bytes    bigint,
    max_database_bytes   bigint,
    price_cents          integer NOT NULL DEFAULT 0,
    currency             text NOT NULL DEFAULT 'USD',
    features             jsonb NOT NULL DEFAULT '[]',
    active               boolean NOT NULL DEFAULT true,
    created_at           timestamptz NOT NULL DEFAULT now()
);

INSERT INTO subscription_plans (code, name, max_users, max_storage_bytes, max_database_bytes, price_cents, features) VALUES
    ('free',       'Free',        3,    1073741824,    536870912,   0,     '["core"]'),
    ('starter',    'Starter',     10,   10737418240,   2147483648,  4900,  '["core", "files"]'),
    ('pro',        'Professional', 50,  107374182400,  10737418240, 19900, '["core", "files", "integrations"]'),
    ('enterprise', 'Enterprise',  NULL, NULL,          NULL,        99900, '["core", "files", "integrations", "sso"]');

-- A tenant is a state machine: status says where it is going, provisioning_step how far
-- it got. Database and role names derive from the id only. Passwords are AES-256-GCM
-- ciphertexts (nonce || ciphertext) under the master key version in secret_key_version,
-- bound to the tenant id and purpose as associated data.
CREATE TABLE tenants (
    id                      uuid PRIMARY KEY,
    slug                    text NOT NULL,
    name                    text NOT NULL,
    status                  text NOT NULL CHECK (status IN ('provisioning', 'active', 'suspended', 'deleting', 'deleted')),
    provisioning_step       text NOT NULL,
    last_error              text,
    plan_code               text NOT NULL REFERENCES subscription_plans (code),
    server_id               text NOT NULL REFERENCES database_servers (id),
    db_name                 text NOT NULL,
    owner_role              text NOT NULL,
    runtime_role            text NOT NULL,
    owner_password_enc      bytea NOT NULL,
    runtime_password_enc    bytea NOT NULL,
    secret_key_version      integer NOT NULL,
    schema_version          integer,
    settings                jsonb NOT NULL DEFAULT '{}',
    features                jsonb NOT NULL DEFAULT '[]',
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    activated_at            timestamptz,
    deleted_at              timestamptz
);

-- A slug is unique among living tenants; a deleted tenant's row stays for the audit
-- trail and its slug may be taken again.
CREATE UNIQUE INDEX tenants_slug_live ON tenants (slug) WHERE status <> 'deleted';
CREATE UNIQUE INDEX tenants_db_name ON tenants (db_name);
CREATE INDEX tenants_status ON tenants (status);

CREATE TABLE tenant_domains (
    domain      text PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    is_primary  boolean NOT NULL DEFAULT false,
    verified    boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tenant_domains_tenant ON tenant_domains (tenant_id);
CREATE UNIQUE INDEX tenant_domains_one_primary ON tenant_domains (tenant_id) WHERE is_primary;

CREATE TABLE tenant_subscriptions (
    id                    uuid PRIMARY KEY,
    tenant_id             uuid NOT NULL REFERENCES tenants (id),
    plan_code             text NOT NULL REFERENCES subscription_plans (code),
    status                text NOT NULL CHECK (status IN ('trialing', 'active', 'past_due', 'cancelled')),
    trial_ends_at         timestamptz,
    current_period_start  timestamptz NOT NULL DEFAULT now(),
    current_period_end    timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tenant_subscriptions_tenant ON tenant_subscriptions (tenant_id);

CREATE TABLE tenant_usage (
    id              bigserial PRIMARY KEY,
    tenant_id       uuid NOT NULL REFERENCES tenants (id),
    sampled_at      timestamptz NOT NULL DEFAULT now(),
    database_bytes  bigint,
    storage_bytes   bigint,
    users           integer,
    requests        bigint NOT NULL DEFAULT 0
);
CREATE INDEX tenant_usage_tenant_time ON tenant_usage (tenant_id, sampled_at DESC);

-- Operators of the control plane. Emails are stored lower-cased.
CREATE TABLE owner_users (
    id             uuid PRIMARY KEY,
    email          text NOT NULL UNIQUE CHECK (email = lower(email)),
    password_hash  text NOT NULL,
    role           text NOT NULL CHECK (role IN ('owner', 'admin', 'viewer')),
    status         text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    last_login_at  timestamptz
);

CREATE TABLE owner_sessions (
    id          uuid PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES owner_users (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz,
    ip          text,
    user_agent  text
);
CREATE INDEX owner_sessions_user ON owner_sessions (user_id);

CREATE TABLE system_settings (
    key         text PRIMARY KEY,
    value       jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Identifies this installation. Every database and role the control plane creates is
-- marked with it, and nothing unmarked is ever adopted or dropped.
INSERT INTO system_settings (key, value) VALUES ('installation_id', to_jsonb(gen_random_uuid()::text));

CREATE TABLE audit_log (
    id           bigserial PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    actor        text NOT NULL,
    action       text NOT NULL,
    target_type  text,
    target_id    text,
    details      jsonb NOT NULL DEFAULT '{}',
    ip           text
);
CREATE INDEX audit_log_at ON audit_log (at DESC);
CREATE INDEX audit_log_target ON audit_log (target_type, target_id, at DESC);
