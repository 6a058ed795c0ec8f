-- A rotation of a tenant's role passwords in flight: the new passwords, sealed, kept
-- until both roles have them and they become the current ones. A crash in between
-- leaves them here for the next `rotate-credentials` or the reconciler to finish.
ALTER TABLE tenants
    ADD COLUMN rotation_key_version int,
    ADD COLUMN rotation_owner_password_enc bytea,
    ADD COLUMN rotation_runtime_password_enc bytea,
    ADD COLUMN rotation_started_at timestamptz,
    ADD CONSTRAINT tenants_rotation_whole CHECK (
        (rotation_key_version IS NULL) = (rotation_owner_password_enc IS NULL)
        AND (rotation_key_version IS NULL) = (rotation_runtime_password_enc IS NULL)
        AND (rotation_key_version IS NULL) = (rotation_started_at IS NULL)
    );
