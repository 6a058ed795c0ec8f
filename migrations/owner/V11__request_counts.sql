-- Requests each serving process counted since the last usage sample, added up across
-- replicas. Every replica adds its counts here; the one replica that samples (it holds
-- the metering lock) takes them all in the transaction that writes the usage rows, so
-- each request is counted in exactly one row however many replicas serve.
CREATE TABLE tenant_request_counts (
    tenant_id  uuid PRIMARY KEY REFERENCES tenants (id),
    requests   bigint NOT NULL CHECK (requests >= 0)
);
