-- Roles are sets of permissions. admin, staff and viewer are built in (with what they
-- always allowed) and cannot be changed; the tenant's admins may define others. Every
-- route of the tenant API checks one permission (see the README's table).
CREATE TABLE roles (
    name         text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_-]{0,39}$'),
    description  text NOT NULL DEFAULT '',
    permissions  text[] NOT NULL,
    built_in     boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

INSERT INTO roles (name, description, permissions, built_in) VALUES
    ('admin', 'Everything, including users and roles',
     ARRAY['practices:read', 'practices:write', 'patients:read', 'patients:write',
           'appointments:read', 'appointments:write', 'medical_records:read', 'medical_records:write',
           'prescriptions:read', 'prescriptions:write', 'inventory:read', 'inventory:write',
           'files:read', 'files:write', 'members:read', 'members:manage',
           'users:manage', 'roles:manage', 'status:details'], true),
    ('staff', 'Reads and writes records and files',
     ARRAY['practices:read', 'practices:write', 'patients:read', 'patients:write',
           'appointments:read', 'appointments:write', 'medical_records:read', 'medical_records:write',
           'prescriptions:read', 'prescriptions:write', 'inventory:read', 'inventory:write',
           'files:read', 'files:write', 'members:read'], true),
    ('viewer', 'Reads records and files',
     ARRAY['practices:read', 'patients:read', 'appointments:read', 'medical_records:read',
           'prescriptions:read', 'inventory:read', 'files:read', 'members:read'], true);

ALTER TABLE users DROP CONSTRAINT users_role_check;
ALTER TABLE users ADD CONSTRAINT users_role_fkey FOREIGN KEY (role) REFERENCES roles (name);
