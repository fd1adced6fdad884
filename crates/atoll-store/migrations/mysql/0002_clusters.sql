-- Database clusters and their servers. Keep in step with
-- ../sqlite/0002_clusters.sql. Idempotent, like 0001.

CREATE TABLE IF NOT EXISTS clusters (
    name VARCHAR(255) NOT NULL PRIMARY KEY,
    engine VARCHAR(64) NOT NULL,
    durability VARCHAR(32) NOT NULL,
    status VARCHAR(32) NOT NULL,
    spec_json MEDIUMTEXT NOT NULL,
    secrets_json TEXT NOT NULL,
    created_by VARCHAR(255) NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS db_servers (
    cluster VARCHAR(255) NOT NULL,
    name VARCHAR(255) NOT NULL,
    host_id VARCHAR(64) NOT NULL,
    zone VARCHAR(255) NOT NULL,
    segment INT NOT NULL,
    address VARCHAR(255) NOT NULL,
    sql_port INT NOT NULL,
    gcomm_port INT NOT NULL,
    ist_port INT NOT NULL,
    sst_port INT NOT NULL,
    dir TEXT NOT NULL,
    status_json MEDIUMTEXT,
    status_at_ms BIGINT,
    PRIMARY KEY (cluster, name),
    KEY db_servers_host (host_id),
    CONSTRAINT db_servers_cluster FOREIGN KEY (cluster) REFERENCES clusters (name) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
