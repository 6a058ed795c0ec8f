-- Moving a tenant's database to another server: a persisted state machine, so a crash at
-- any step ends with the tenant on exactly one server. 'copying': the tenant is in
-- maintenance (reads served), its writes are revoked on the source, and the copy is
-- made and verified on the target; undone if it fails or dies. 'switched': the tenant's
-- server_id points at the target (in the same transaction as this phase); the source's
-- database and roles are dropped once drop_after has passed ('done').
CREATE TABLE tenant_moves (
    id            uuid PRIMARY KEY,
    tenant_id     uuid NOT NULL REFERENCES tenants (id),
    from_server   text NOT NULL REFERENCES database_servers (id),
    to_server     text NOT NULL REFERENCES database_servers (id),
    phase         text NOT NULL CHECK (phase IN ('copying', 'switched', 'done', 'failed')),
    requested_by  text NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    switched_at   timestamptz,
    finished_at   timestamptz,
    drop_after    timestamptz,
    -- How long the tenant's writes were refused, and what was verified.
    write_pause_ms integer,
    tables        jsonb,
    error         text,
    CHECK (from_server <> to_server)
);
CREATE INDEX tenant_moves_tenant ON tenant_moves (tenant_id, started_at DESC);
CREATE UNIQUE INDEX tenant_moves_one_copying ON tenant_moves (tenant_id) WHERE phase = 'copying';
