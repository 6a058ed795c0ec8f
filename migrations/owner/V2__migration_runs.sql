-- Fleet migrations: one row per run, one row per tenant the run looked at.
-- Only one run is active at a time (an advisory lock held by the running process);
-- a row left 'running' by a process that died is marked 'interrupted' by the next run.

CREATE TABLE migration_runs (
    id              uuid PRIMARY KEY,
    status          text NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'halted', 'interrupted', 'dry_run')),
    source          text NOT NULL,
    target_version  integer NOT NULL,
    options         jsonb NOT NULL DEFAULT '{}',
    started_by      text NOT NULL,
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    halt_reason     text
);
CREATE INDEX migration_runs_started ON migration_runs (started_at DESC);

CREATE TABLE migration_run_tenants (
    run_id        uuid NOT NULL REFERENCES migration_runs (id),
    tenant_id     uuid NOT NULL REFERENCES tenants (id),
    slug          text NOT NULL,
    wave          text NOT NULL DEFAULT 'main' CHECK (wave IN ('canary', 'main')),
    status        text NOT NULL CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'skipped', 'interrupted')),
    from_version  integer,
    to_version    integer,
    pending       jsonb,
    error         text,
    started_at    timestamptz,
    finished_at   timestamptz,
    duration_ms   integer,
    PRIMARY KEY (run_id, tenant_id)
);
CREATE INDEX migration_run_tenants_status ON migration_run_tenants (run_id, status);
