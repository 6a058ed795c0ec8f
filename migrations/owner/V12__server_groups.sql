-- Server groups: a plan may pin its tenants to the servers of one group (dedicated
-- servers for an enterprise plan, say). Tenants of a plan without a group go to servers
-- without a group, so a group's servers hold only the plans pinned to it.
ALTER TABLE database_servers
    ADD COLUMN server_group text CHECK (server_group ~ '^[a-z][a-z0-9-]{0,39}$');
ALTER TABLE subscription_plans
    ADD COLUMN server_group text CHECK (server_group ~ '^[a-z][a-z0-9-]{0,39}$');
