-- The schema of every tenant database. Each tenant has its own copy; nothing here
-- refers to other tenants. Objects are owned by the tenant's owner role; the runtime
-- role that serves requests may only read and write rows.

CREATE TABLE users (
    id                    uuid PRIMARY KEY,
    email                 text NOT NULL UNIQUE CHECK (email = lower(email)),
    name                  text NOT NULL DEFAULT '',
    password_hash         text NOT NULL,
    role                  text NOT NULL CHECK (role IN ('admin', 'staff', 'viewer')),
    status                text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    must_change_password  boolean NOT NULL DEFAULT false,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    last_login_at         timestamptz
);

-- Refresh tokens are stored as SHA-256 hashes; revoking one ends the session.
CREATE TABLE sessions (
    id           uuid PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash   bytea NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz,
    ip           text,
    user_agent   text
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE practices (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    address     text,
    phone       text,
    email       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE user_practices (
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    practice_id  uuid NOT NULL REFERENCES practices (id) ON DELETE CASCADE,
    role         text NOT NULL DEFAULT 'member',
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, practice_id)
);

CREATE TABLE patients (
    id             uuid PRIMARY KEY,
    practice_id    uuid NOT NULL REFERENCES practices (id),
    name           text NOT NULL,
    species        text,
    breed          text,
    date_of_birth  date,
    owner_name     text,
    owner_phone    text,
    owner_email    text,
    notes          text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX patients_practice ON patients (practice_id);

CREATE TABLE appointments (
    id            uuid PRIMARY KEY,
    practice_id   uuid NOT NULL REFERENCES practices (id),
    patient_id    uuid NOT NULL REFERENCES patients (id),
    staff_id      uuid REFERENCES users (id),
    starts_at     timestamptz NOT NULL,
    ends_at       timestamptz NOT NULL CHECK (ends_at > starts_at),
    status        text NOT NULL DEFAULT 'scheduled' CHECK (status IN ('scheduled', 'confirmed', 'completed', 'cancelled', 'no_show')),
    reason        text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX appointments_practice_time ON appointments (practice_id, starts_at);
CREATE INDEX appointments_patient ON appointments (patient_id);

CREATE TABLE medical_records (
    id           uuid PRIMARY KEY,
    patient_id   uuid NOT NULL REFERENCES patients (id),
    author_id    uuid REFERENCES users (id),
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    kind         text NOT NULL DEFAULT 'note',
    summary      text NOT NULL,
    details      jsonb NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX medical_records_patient ON medical_records (patient_id, recorded_at DESC);

CREATE TABLE prescriptions (
    id             uuid PRIMARY KEY,
    patient_id     uuid NOT NULL REFERENCES patients (id),
    prescriber_id  uuid REFERENCES users (id),
    medication     text NOT NULL,
    dosage         text NOT NULL,
    instructions   text,
    starts_on      date NOT NULL DEFAULT current_date,
    ends_on        date,
    status         text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'completed', 'cancelled')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX prescriptions_patient ON prescriptions (patient_id);

CREATE TABLE inventory (
    id             uuid PRIMARY KEY,
    practice_id    uuid NOT NULL REFERENCES practices (id),
    sku            text NOT NULL,
    name           text NOT NULL,
    quantity       integer NOT NULL DEFAULT 0 CHECK (quantity >= 0),
    unit           text NOT NULL DEFAULT 'unit',
    reorder_level  integer NOT NULL DEFAULT 0 CHECK (reorder_level >= 0),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (practice_id, sku)
);

-- Metadata of what lies in the tenant's storage tree; the bytes live on disk.
CREATE TABLE files (
    id            uuid PRIMARY KEY,
    folder        text NOT NULL CHECK (folder IN ('documents', 'uploads', 'medical-imaging')),
    name          text NOT NULL,
    storage_path  text NOT NULL UNIQUE,
    content_type  text NOT NULL DEFAULT 'application/octet-stream',
    size_bytes    bigint NOT NULL CHECK (size_bytes >= 0),
    sha256        bytea,
    uploaded_by   uuid REFERENCES users (id),
    patient_id    uuid REFERENCES patients (id),
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Third-party credentials, AES-256-GCM encrypted by the control plane before they get here.
CREATE TABLE integrations (
    id                 uuid PRIMARY KEY,
    provider           text NOT NULL,
    name               text NOT NULL,
    credentials_enc    bytea NOT NULL,
    key_version        integer NOT NULL,
    settings           jsonb NOT NULL DEFAULT '{}',
    enabled            boolean NOT NULL DEFAULT true,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (provider, name)
);

CREATE TABLE audit_log (
    id           bigserial PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    actor_id     uuid,
    action       text NOT NULL,
    target_type  text,
    target_id    text,
    details      jsonb NOT NULL DEFAULT '{}',
    ip           text
);
CREATE INDEX audit_log_at ON audit_log (at DESC);
