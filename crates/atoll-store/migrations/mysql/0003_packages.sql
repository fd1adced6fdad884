-- Engine builds registered as package tarballs. Keep in step with
-- ../sqlite/0003_packages.sql. Idempotent, like 0001.

CREATE TABLE IF NOT EXISTS packages (
    name VARCHAR(64) NOT NULL PRIMARY KEY,
    version VARCHAR(255) NOT NULL,
    sha256 CHAR(64) NOT NULL,
    size_bytes BIGINT NOT NULL,
    mariadbd TEXT NOT NULL,
    install_db TEXT NOT NULL,
    galera TEXT NOT NULL,
    created_by VARCHAR(255) NOT NULL,
    created_at_ms BIGINT NOT NULL,
    UNIQUE KEY packages_sha256 (sha256)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
