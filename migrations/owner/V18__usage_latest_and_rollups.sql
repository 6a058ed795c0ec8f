-- Usage history that stays small: each tenant's latest known figures in one row (what
-- the pages, totals and quota read, instead of searching the history), and samples older
-- than two days rolled up by hour, hourly rows older than 30 days by day, daily rows
-- dropped after CP_USAGE_RETENTION_DAYS. A sample per tenant every 5 minutes then costs
-- 576 raw rows per tenant, not 105,000 a year.
CREATE TABLE tenant_usage_latest (
    tenant_id       uuid PRIMARY KEY REFERENCES tenants (id),
    sampled_at      timestamptz NOT NULL,
    -- Each figure is the latest *known* one: a sample that could not measure it (NULL)
    -- leaves the previous value.
    database_bytes  bigint,
    storage_bytes   bigint,
    users           integer,
    -- Of the latest sample.
    requests        bigint NOT NULL DEFAULT 0
);

INSERT INTO tenant_usage_latest (tenant_id, sampled_at, database_bytes, storage_bytes, users, requests)
SELECT t.id, s.sampled_at,
       (SELECT database_bytes FROM tenant_usage u WHERE u.tenant_id = t.id AND database_bytes IS NOT NULL ORDER BY sampled_at DESC LIMIT 1),
       (SELECT storage_bytes FROM tenant_usage u WHERE u.tenant_id = t.id AND storage_bytes IS NOT NULL ORDER BY sampled_at DESC LIMIT 1),
       (SELECT users FROM tenant_usage u WHERE u.tenant_id = t.id AND users IS NOT NULL ORDER BY sampled_at DESC LIMIT 1),
       s.requests
FROM tenants t
JOIN LATERAL (SELECT sampled_at, requests FROM tenant_usage u WHERE u.tenant_id = t.id
              ORDER BY sampled_at DESC, id DESC LIMIT 1) s ON true;

CREATE TABLE tenant_usage_rollups (
    tenant_id       uuid NOT NULL REFERENCES tenants (id),
    period          text NOT NULL CHECK (period IN ('hour', 'day')),
    bucket          timestamptz NOT NULL,
    samples         integer NOT NULL,
    -- The largest figure seen in the bucket, and the requests served in it.
    database_bytes  bigint,
    storage_bytes   bigint,
    users           integer,
    requests        bigint NOT NULL,
    PRIMARY KEY (tenant_id, period, bucket)
);
CREATE INDEX tenant_usage_sampled ON tenant_usage (sampled_at);
