-- The tenant migration set that fleet runs applied (each migration's name, checksum and
-- SQL). It is the source of truth every process reads alongside its built-in migrations:
-- `migrate status`, `--verify`, the dashboard and provisioning agree after a run made
-- with `migrate --dir`, whatever folder (or none) the reading process was given.
CREATE TABLE tenant_migrations (
    version      integer PRIMARY KEY,
    name         text NOT NULL,
    checksum     text NOT NULL,
    sql          text NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    -- The run that recorded it (null once that run's record is gone).
    run_id       uuid REFERENCES migration_runs (id) ON DELETE SET NULL
);

CREATE FUNCTION control_plane_notify_migrations() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('control_plane_changes', 'migrations');
    RETURN NULL;
END
$$;

CREATE TRIGGER tenant_migrations_notify
    AFTER INSERT ON tenant_migrations
    FOR EACH STATEMENT
    EXECUTE FUNCTION control_plane_notify_migrations();

-- A dry run's tenant rows say what a real run would apply, rather than "skipped".
ALTER TABLE migration_run_tenants DROP CONSTRAINT migration_run_tenants_status_check;
ALTER TABLE migration_run_tenants ADD CONSTRAINT migration_run_tenants_status_check
    CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'skipped', 'interrupted', 'would_apply'));
UPDATE migration_run_tenants SET status = 'would_apply'
    WHERE status = 'skipped' AND run_id IN (SELECT id FROM migration_runs WHERE status = 'dry_run');
