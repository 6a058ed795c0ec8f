-- Envelope encryption of tenant secrets. A tenant with a data key has its role passwords
-- (current and in rotation) sealed with that key, and the key sealed with the master key
-- version in secret_key_version, bound to the tenant ('tenant:<id>:data-key'). Re-sealing
-- every secret under a new master version (`keys rewrap`) then touches one key per tenant.
-- A tenant without one (made before this migration) has its passwords sealed with the
-- master key directly, as before, until `keys rewrap` gives it a data key.
ALTER TABLE tenants ADD COLUMN data_key_enc bytea;

-- The master key version new secrets are sealed with lives in system_settings
-- ('master_key_sealing_version'), recorded at first start and moved by `keys rotate`;
-- versions retired by `keys retire` are recorded as 'master_key_retired.<version>'.

-- Every process seals with the recorded version: announce a rotation on the change feed.
CREATE FUNCTION control_plane_notify_keys() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('control_plane_changes', 'keys');
    RETURN NULL;
END
$$;

CREATE TRIGGER system_settings_notify_keys
    AFTER INSERT OR UPDATE ON system_settings
    FOR EACH ROW
    WHEN (NEW.key = 'master_key_sealing_version')
    EXECUTE FUNCTION control_plane_notify_keys();
