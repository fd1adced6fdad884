-- Engine builds registered as package tarballs. Keep in step with
-- ../mysql/0003_packages.sql.

CREATE TABLE IF NOT EXISTS packages (
    name TEXT NOT NULL PRIMARY KEY,
    version TEXT NOT NULL,
    sha256 TEXT NOT NULL UNIQUE,
    size_bytes BIGINT NOT NULL,
    mariadbd TEXT NOT NULL,
    install_db TEXT NOT NULL,
    galera TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
