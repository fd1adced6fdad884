-- Routing: which server of a cluster takes writes, and the proxies that
-- route to it. Keep in step with ../sqlite/0004_routing.sql. Idempotent.

CREATE TABLE IF NOT EXISTS cluster_routing (
    cluster VARCHAR(255) NOT NULL PRIMARY KEY,
    writer VARCHAR(255),
    moving_to VARCHAR(255),
    changed_at_ms BIGINT NOT NULL,
    CONSTRAINT cluster_routing_cluster FOREIGN KEY (cluster) REFERENCES clusters (name) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS proxies (
    cluster VARCHAR(255) NOT NULL,
    name VARCHAR(255) NOT NULL,
    host_id VARCHAR(64) NOT NULL,
    zone VARCHAR(255) NOT NULL,
    address VARCHAR(255) NOT NULL,
    rw_port INT NOT NULL,
    ro_port INT NOT NULL,
    admin_port INT NOT NULL,
    status_json MEDIUMTEXT,
    status_at_ms BIGINT,
    PRIMARY KEY (cluster, name),
    KEY proxies_host (host_id),
    CONSTRAINT proxies_cluster FOREIGN KEY (cluster) REFERENCES clusters (name) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
