-- Per-tenant settings and feature flags, and the database quota.
--
-- tenants.settings holds what the tenant app reads at GET /api/v1/settings (time zone,
-- locale, branding); tenants.features holds operators' overrides of the plan's features,
-- as {"feature": true|false}: the tenant's features are its plan's, plus the overrides set
-- to true, minus those set to false. Both were created in V1 and never written; the
-- overrides were an array then.
UPDATE tenants SET features = '{}' WHERE jsonb_typeof(features) <> 'object';
ALTER TABLE tenants ALTER COLUMN features SET DEFAULT '{}';
ALTER TABLE tenants ADD CONSTRAINT tenants_features_object CHECK (jsonb_typeof(features) = 'object');
ALTER TABLE tenants ADD CONSTRAINT tenants_settings_object CHECK (jsonb_typeof(settings) = 'object');

-- The files API is gated by the "files" feature from now on. The free plan as first
-- seeded carries a storage limit but listed only "core": it gets "files" so its tenants
-- keep the files they were given room for. A free plan an operator has edited is left
-- as it is.
UPDATE subscription_plans SET features = '["core", "files"]'
 WHERE code = 'free' AND features = '["core"]';

-- Set by metering (and when a plan or a tenant's plan changes) from the latest sampled
-- database size against the plan's max_database_bytes: the gateway then refuses writes
-- with 507 database_quota until the tenant is back under it.
ALTER TABLE tenants ADD COLUMN database_over_quota boolean NOT NULL DEFAULT false;

-- The gateway caches the flag with the tenant, so a change of it is announced too.
DROP TRIGGER tenants_notify_change ON tenants;
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
          OR OLD.features IS DISTINCT FROM NEW.features
          OR OLD.database_over_quota IS DISTINCT FROM NEW.database_over_quota)
    EXECUTE FUNCTION control_plane_notify_tenant();
