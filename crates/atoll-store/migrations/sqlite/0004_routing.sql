-- Routing: which server of a cluster takes writes, and the proxies that
-- route to it. Keep in step with ../mysql/0004_routing.sql.

CREATE TABLE IF NOT EXISTS cluster_routing (
    cluster TEXT NOT NULL PRIMARY KEY REFERENCES clusters (name) ON DELETE CASCADE,
    writer TEXT,
    moving_to TEXT,
    changed_at_ms BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS proxies (
    cluster TEXT NOT NULL REFERENCES clusters (name) ON DELETE CASCADE,
    name TEXT NOT NULL,
    host_id TEXT NOT NULL,
    zone TEXT NOT NULL,
    address TEXT NOT NULL,
    rw_port INTEGER NOT NULL,
    ro_port INTEGER NOT NULL,
    admin_port INTEGER NOT NULL,
    status_json TEXT,
    status_at_ms BIGINT,
    PRIMARY KEY (cluster, name)
);

CREATE INDEX IF NOT EXISTS proxies_host ON proxies (host_id);
