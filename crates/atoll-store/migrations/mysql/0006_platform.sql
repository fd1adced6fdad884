-- The platform's own servers: leases for work that must run on one server
-- at a time (with a fencing generation), and the servers that are up.
-- Keep in step with ../sqlite/0006_platform.sql. Idempotent.

CREATE TABLE IF NOT EXISTS leases (
    name VARCHAR(255) NOT NULL PRIMARY KEY,
    holder VARCHAR(255) NOT NULL,
    generation BIGINT NOT NULL,
    acquired_at_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    fenced_at_ms BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS platform_servers (
    id VARCHAR(255) NOT NULL PRIMARY KEY,
    url VARCHAR(1024) NOT NULL,
    version VARCHAR(64) NOT NULL,
    started_at_ms BIGINT NOT NULL,
    seen_at_ms BIGINT NOT NULL,
    errors_logged BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
