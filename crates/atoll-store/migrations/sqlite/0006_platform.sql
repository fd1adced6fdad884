-- The platform's own servers: leases for work that must run on one server
-- at a time (with a fencing generation), and the servers that are up.
-- Keep in step with ../mysql/0006_platform.sql.

CREATE TABLE IF NOT EXISTS leases (
    name TEXT NOT NULL PRIMARY KEY,
    holder TEXT NOT NULL,
    generation BIGINT NOT NULL,
    acquired_at_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    fenced_at_ms BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS platform_servers (
    id TEXT NOT NULL PRIMARY KEY,
    url TEXT NOT NULL,
    version TEXT NOT NULL,
    started_at_ms BIGINT NOT NULL,
    seen_at_ms BIGINT NOT NULL,
    errors_logged BIGINT NOT NULL
);
