-- Per-tenant backups: a pg_dump of the tenant's database and an archive of its file tree,
-- with a manifest, in a folder of their own under the backup root. The row is the record
-- of what was taken; the manifest's own SHA-256 is kept here so a changed manifest is
-- caught as surely as a changed dump.
CREATE TABLE tenant_backups (
    id               uuid PRIMARY KEY,
    tenant_id        uuid NOT NULL REFERENCES tenants (id),
    kind             text NOT NULL CHECK (kind IN ('scheduled', 'manual', 'pre_migration')),
    status           text NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'removed')),
    -- The folder holding the dump, the archive and the manifest.
    location         text NOT NULL,
    schema_version   integer,
    database_bytes   bigint,
    files_bytes      bigint,
    manifest_sha256  text,
    error            text,
    requested_by     text NOT NULL,
    -- The fleet run a pre-migration backup was taken for.
    migration_run_id uuid,
    started_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    CHECK (status <> 'succeeded' OR (manifest_sha256 IS NOT NULL AND finished_at IS NOT NULL))
);

-- Two backups of one tenant never overlap.
CREATE UNIQUE INDEX tenant_backups_one_running ON tenant_backups (tenant_id) WHERE status = 'running';
CREATE INDEX tenant_backups_by_tenant ON tenant_backups (tenant_id, started_at DESC);

-- A restore of a backup into a tenant (the one it was taken from, or a clone). `phase`
-- says how far it got, so the reconciler knows whether to undo (before the swap) or to
-- finish (after it).
CREATE TABLE tenant_restores (
    id          uuid PRIMARY KEY,
    backup_id   uuid NOT NULL REFERENCES tenant_backups (id),
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    status      text NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    phase       text NOT NULL CHECK (phase IN ('loading', 'swapped')),
    -- Into a tenant made for it (a clone), which is deleted again if the restore fails.
    into_new    boolean NOT NULL DEFAULT false,
    error       text,
    requested_by text NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);

CREATE UNIQUE INDEX tenant_restores_one_running ON tenant_restores (tenant_id) WHERE status = 'running';

-- How often the tenants of a plan are backed up, and how many scheduled backups are
-- kept: the newest of each of the last `keep_daily` days and of each of the last
-- `keep_weekly` weeks.
CREATE TABLE backup_policies (
    plan_code    text PRIMARY KEY REFERENCES subscription_plans (code) ON UPDATE CASCADE,
    every_secs   integer NOT NULL CHECK (every_secs >= 300),
    keep_daily   integer NOT NULL CHECK (keep_daily >= 0),
    keep_weekly  integer NOT NULL CHECK (keep_weekly >= 0),
    CHECK (keep_daily + keep_weekly > 0)
);

INSERT INTO backup_policies (plan_code, every_secs, keep_daily, keep_weekly)
SELECT code, CASE WHEN code = 'enterprise' THEN 3600 ELSE 86400 END, 7, 4
FROM subscription_plans;

-- A tenant in maintenance is not served (503 with Retry-After) while an operation that
-- must not race its requests runs; the text says which.
ALTER TABLE tenants ADD COLUMN maintenance text;

-- The restore test's results: a recent backup restored into a scratch database, its row
-- counts compared with its manifest.
CREATE TABLE restore_tests (
    id          uuid PRIMARY KEY,
    backup_id   uuid NOT NULL REFERENCES tenant_backups (id),
    ok          boolean NOT NULL,
    detail      text NOT NULL,
    duration_ms bigint NOT NULL,
    tested_at   timestamptz NOT NULL DEFAULT now()
);
