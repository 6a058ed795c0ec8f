-- Maintenance mode, generalised from restores. `maintenance` names who holds it:
-- 'operator' (set and cleared by hand), or an operation that must not race the tenant's
-- requests ('restore', 'migration'). An operation takes it only when it is free and
-- releases only its own, so one set by an operator outlives a restore run under it.
-- With maintenance_reads, GET and HEAD requests are still served.
ALTER TABLE tenants
    ADD COLUMN maintenance_note text,
    ADD COLUMN maintenance_reads boolean NOT NULL DEFAULT false,
    ADD COLUMN maintenance_since timestamptz;

UPDATE tenants SET maintenance_since = updated_at WHERE maintenance IS NOT NULL;
