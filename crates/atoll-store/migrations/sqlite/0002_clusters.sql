-- Database clusters and their servers. Keep in step with
-- ../mysql/0002_clusters.sql.

CREATE TABLE IF NOT EXISTS clusters (
    name TEXT NOT NULL PRIMARY KEY,
    engine TEXT NOT NULL,
    durability TEXT NOT NULL,
    status TEXT NOT NULL,
    spec_json TEXT NOT NULL,
    secrets_json TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS db_servers (
    cluster TEXT NOT NULL REFERENCES clusters (name) ON DELETE CASCADE,
    name TEXT NOT NULL,
    host_id TEXT NOT NULL,
    zone TEXT NOT NULL,
    segment INTEGER NOT NULL,
    address TEXT NOT NULL,
    sql_port INTEGER NOT NULL,
    gcomm_port INTEGER NOT NULL,
    ist_port INTEGER NOT NULL,
    sst_port INTEGER NOT NULL,
    dir TEXT NOT NULL,
    status_json TEXT,
    status_at_ms BIGINT,
    PRIMARY KEY (cluster, name)
);

CREATE INDEX IF NOT EXISTS db_servers_host ON db_servers (host_id);
