-- The first user of a new tenant, asked for at creation and made in the tenant's own
-- database during provisioning. Only an argon2 hash is kept, and only until the tenant
-- is active.
ALTER TABLE tenants ADD COLUMN initial_admin jsonb;
