-- Every change a cache of tenants, domains or plans must follow is announced on the
-- channel control_plane_changes, from the database itself: whichever process (a replica,
-- the CLI, an operator's psql) made it, and only once it commits. Payloads are
-- 'tenant <uuid>' and 'plans'. Columns no cache holds (provisioning_step, last_error,
-- schema_version, timestamps) are left out so provisioning steps and fleet migrations do
-- not make every replica drop its pools.

CREATE FUNCTION control_plane_notify_tenant() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('control_plane_changes', 'tenant ' || NEW.id);
    RETURN NULL;
END
$$;

CREATE TRIGGER tenants_notify_change
    AFTER UPDATE ON tenants
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
          OR OLD.maintenance IS DISTINCT FROM NEW.maintenance
          OR OLD.maintenance_reads IS DISTINCT FROM NEW.maintenance_reads
          OR OLD.plan_code IS DISTINCT FROM NEW.plan_code
          OR OLD.slug IS DISTINCT FROM NEW.slug
          OR OLD.name IS DISTINCT FROM NEW.name
          OR OLD.server_id IS DISTINCT FROM NEW.server_id
          OR OLD.db_name IS DISTINCT FROM NEW.db_name
          OR OLD.runtime_role IS DISTINCT FROM NEW.runtime_role
          OR OLD.runtime_password_enc IS DISTINCT FROM NEW.runtime_password_enc
          OR OLD.settings IS DISTINCT FROM NEW.settings
          OR OLD.features IS DISTINCT FROM NEW.features)
    EXECUTE FUNCTION control_plane_notify_tenant();

CREATE FUNCTION control_plane_notify_domain() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM pg_notify('control_plane_changes', 'tenant ' || OLD.tenant_id);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM pg_notify('control_plane_changes', 'tenant ' || NEW.tenant_id);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER tenant_domains_notify_change
    AFTER INSERT OR UPDATE OR DELETE ON tenant_domains
    FOR EACH ROW
    EXECUTE FUNCTION control_plane_notify_domain();

CREATE FUNCTION control_plane_notify_plans() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('control_plane_changes', 'plans');
    RETURN NULL;
END
$$;

CREATE TRIGGER subscription_plans_notify_change
    AFTER INSERT OR UPDATE OR DELETE ON subscription_plans
    FOR EACH STATEMENT
    EXECUTE FUNCTION control_plane_notify_plans();
