-- Integrations: third-party accounts a tenant connects (a payment provider, an ads
-- account). Credentials are sealed by the control plane with a key derived from the
-- tenant's data key, bound to the integration; only a hint (the last characters of the
-- secret) is kept readable. Every call made to the provider is logged, and ages out.
ALTER TABLE integrations
    ADD COLUMN status text NOT NULL DEFAULT 'connected'
        CHECK (status IN ('connected', 'error', 'disabled')),
    ADD COLUMN credentials_hint text NOT NULL DEFAULT '',
    ADD COLUMN last_checked_at timestamptz,
    ADD COLUMN last_sync_at timestamptz,
    ADD COLUMN last_error text;
UPDATE integrations SET status = 'disabled' WHERE NOT enabled;
ALTER TABLE integrations DROP COLUMN enabled;

CREATE TABLE integration_calls (
    id              bigserial PRIMARY KEY,
    integration_id  uuid NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    provider        text NOT NULL,
    operation       text NOT NULL CHECK (operation IN ('test', 'sync')),
    status          integer,
    error           text,
    duration_ms     integer NOT NULL,
    at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX integration_calls_integration_at ON integration_calls (integration_id, at DESC);

UPDATE roles SET permissions = permissions || ARRAY['integrations:read', 'integrations:manage']
 WHERE name = 'admin';
UPDATE roles SET permissions = permissions || ARRAY['integrations:read']
 WHERE name IN ('staff', 'viewer');
