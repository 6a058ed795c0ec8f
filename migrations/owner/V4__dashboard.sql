-- The dashboard: cookie sessions, invited operators, plan edits, audit filters, tenant search.

-- Every operator token names its session, so logging out (or disabling an operator)
-- revokes it server-side. `kind` tells bearer tokens from dashboard cookies.
ALTER TABLE owner_sessions ADD COLUMN kind text NOT NULL DEFAULT 'api' CHECK (kind IN ('api', 'dashboard'));

-- An invited operator signs in with a one-time password and must choose their own.
ALTER TABLE owner_users ADD COLUMN must_change_password boolean NOT NULL DEFAULT false;

ALTER TABLE subscription_plans ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();

-- Login throttling counts recent failures per account and per address from the audit log.
CREATE INDEX audit_log_login_failed_target ON audit_log (target_id, at) WHERE action = 'operator.login_failed';
CREATE INDEX audit_log_login_failed_ip ON audit_log (ip, at) WHERE action = 'operator.login_failed';
CREATE INDEX audit_log_action_at ON audit_log (action, at DESC);
CREATE INDEX audit_log_actor_at ON audit_log (actor, at DESC);

-- The tenants page sorts by these; with ten thousand tenants each sort must be an index scan.
CREATE INDEX tenants_created_at ON tenants (created_at, id);
CREATE INDEX tenants_name ON tenants (lower(name), id);
CREATE INDEX tenants_slug_order ON tenants (slug, id);
CREATE INDEX tenants_plan ON tenants (plan_code);
