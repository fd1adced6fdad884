-- MetaDB schema, MySQL/MariaDB flavour (also Galera). Keep in step with
-- ../sqlite/0001_init.sql: same tables, columns and keys.
-- Times are BIGINT unix-ms, flags SMALLINT 0/1, JSON is TEXT: sqlx's Any
-- driver cannot decode TINYINT, BOOLEAN, DATETIME or DECIMAL.
-- Every table has a primary key (Galera needs one). utf8mb4_bin makes text
-- comparisons and UNIQUE keys case- and accent-sensitive, as on SQLite.
-- Statements are idempotent (IF NOT EXISTS, indexes declared inline) because
-- DDL cannot run in a transaction here and two servers may migrate at once.
-- Each statement ends with ';' at the end of a line (the migrator splits there).

CREATE TABLE IF NOT EXISTS hosts (
    id VARCHAR(64) NOT NULL PRIMARY KEY,
    name VARCHAR(255) NOT NULL,
    address VARCHAR(255) NOT NULL,
    agent_url TEXT,
    zone VARCHAR(255),
    status VARCHAR(32) NOT NULL,
    facts_json MEDIUMTEXT,
    agent_version VARCHAR(255),
    created_at_ms BIGINT NOT NULL,
    last_heartbeat_ms BIGINT,
    agent_token_hash VARCHAR(255),
    server_token VARCHAR(255),
    checks_json MEDIUMTEXT,
    checked_at_ms BIGINT,
    UNIQUE KEY hosts_name (name),
    UNIQUE KEY hosts_address (address),
    KEY hosts_status_heartbeat (status, last_heartbeat_ms)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS users (
    name VARCHAR(255) NOT NULL PRIMARY KEY,
    password_hash VARCHAR(512) NOT NULL,
    role VARCHAR(32) NOT NULL,
    must_change_password SMALLINT NOT NULL,
    created_at_ms BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS sessions (
    token_hash VARCHAR(128) NOT NULL PRIMARY KEY,
    user_name VARCHAR(255) NOT NULL,
    source VARCHAR(255) NOT NULL,
    created_at_ms BIGINT NOT NULL,
    last_seen_ms BIGINT NOT NULL,
    KEY sessions_user (user_name),
    CONSTRAINT sessions_user_fk FOREIGN KEY (user_name) REFERENCES users (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS api_tokens (
    id VARCHAR(128) NOT NULL PRIMARY KEY,
    user_name VARCHAR(255) NOT NULL,
    name VARCHAR(255) NOT NULL,
    token_hash VARCHAR(128) NOT NULL,
    created_at_ms BIGINT NOT NULL,
    last_used_ms BIGINT,
    UNIQUE KEY api_tokens_hash (token_hash),
    KEY api_tokens_user (user_name),
    CONSTRAINT api_tokens_user_fk FOREIGN KEY (user_name) REFERENCES users (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS login_failures (
    source VARCHAR(255) NOT NULL PRIMARY KEY,
    failures INT NOT NULL,
    first_failure_ms BIGINT NOT NULL,
    locked_until_ms BIGINT
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS audit_log (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    actor VARCHAR(255) NOT NULL,
    source VARCHAR(255) NOT NULL,
    action VARCHAR(255) NOT NULL,
    target TEXT NOT NULL,
    detail_json MEDIUMTEXT NOT NULL,
    outcome TEXT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS settings (
    setting_key VARCHAR(255) NOT NULL PRIMARY KEY,
    value MEDIUMTEXT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS tasks (
    id VARCHAR(128) NOT NULL PRIMARY KEY,
    kind VARCHAR(255) NOT NULL,
    title TEXT NOT NULL,
    target VARCHAR(255) NOT NULL,
    status VARCHAR(32) NOT NULL,
    phase VARCHAR(32) NOT NULL,
    cancel_requested SMALLINT NOT NULL,
    params_json MEDIUMTEXT NOT NULL,
    created_by VARCHAR(255) NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    finished_at_ms BIGINT,
    KEY tasks_created (created_at_ms, id),
    KEY tasks_status (status),
    KEY tasks_target (target)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS task_steps (
    task_id VARCHAR(128) NOT NULL,
    step_key VARCHAR(191) NOT NULL,
    seq BIGINT NOT NULL,
    kind VARCHAR(255) NOT NULL,
    title TEXT NOT NULL,
    params_json MEDIUMTEXT NOT NULL,
    deps_json TEXT NOT NULL,
    status VARCHAR(32) NOT NULL,
    attempts INT NOT NULL,
    max_attempts INT NOT NULL,
    timeout_ms BIGINT NOT NULL,
    not_before_ms BIGINT NOT NULL,
    lease_owner VARCHAR(255),
    lease_expires_ms BIGINT,
    started_at_ms BIGINT,
    finished_at_ms BIGINT,
    output_json MEDIUMTEXT,
    error TEXT,
    PRIMARY KEY (task_id, step_key),
    CONSTRAINT task_steps_task_fk FOREIGN KEY (task_id) REFERENCES tasks (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS step_logs (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    task_id VARCHAR(128) NOT NULL,
    step_key VARCHAR(191) NOT NULL,
    attempt INT NOT NULL,
    at_ms BIGINT NOT NULL,
    level VARCHAR(16) NOT NULL,
    message MEDIUMTEXT NOT NULL,
    KEY step_logs_task (task_id, id),
    KEY step_logs_task_step (task_id, step_key, id),
    CONSTRAINT step_logs_task_fk FOREIGN KEY (task_id) REFERENCES tasks (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
