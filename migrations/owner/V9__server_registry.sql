-- database_servers becomes the registry of the PostgreSQL servers tenants live on. The
-- first, 'default', is the server of CP_ADMIN_DATABASE_URL and keeps its connection in
-- the configuration; every other server's admin connection URL is stored here, sealed
-- under the master key like tenant passwords (bound to the server's id). New tenants go
-- to an active server with room; a draining server keeps its tenants but gets no new
-- ones; a disabled one gets none and is skipped by fleet-wide passes.
ALTER TABLE database_servers
    ADD COLUMN admin_url_enc bytea,
    ADD COLUMN secret_key_version integer,
    ADD COLUMN status text NOT NULL DEFAULT 'active'
        CHECK (status IN ('active', 'draining', 'disabled')),
    ADD COLUMN max_tenants integer CHECK (max_tenants > 0),
    ADD COLUMN connection_budget integer CHECK (connection_budget > 0),
    ADD CONSTRAINT database_servers_sealed_url
        CHECK (id = 'default' OR (admin_url_enc IS NOT NULL AND secret_key_version IS NOT NULL)),
    ADD CONSTRAINT database_servers_id_format CHECK (id ~ '^[a-z][a-z0-9-]{0,39}$');

CREATE INDEX tenants_server ON tenants (server_id) WHERE status <> 'deleted';

-- Server changes reach every replica like tenant changes do.
CREATE FUNCTION control_plane_notify_server() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('control_plane_changes', 'server ' || OLD.id);
    ELSE
        PERFORM pg_notify('control_plane_changes', 'server ' || NEW.id);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER database_servers_notify_change
    AFTER UPDATE OR DELETE ON database_servers
    FOR EACH ROW
    EXECUTE FUNCTION control_plane_notify_server();
