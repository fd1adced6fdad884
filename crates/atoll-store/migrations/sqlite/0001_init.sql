-- MetaDB schema, SQLite flavour. Keep in step with ../mysql/0001_init.sql:
-- same tables, columns and keys; only the type names differ.
-- Times are BIGINT unix-ms, flags INTEGER 0/1, JSON is TEXT.
-- Each statement ends with ';' at the end of a line (the migrator splits there).

CREATE TABLE IF NOT EXISTS hosts (
    id TEXT NOT NULL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    address TEXT NOT NULL UNIQUE,
    agent_url TEXT,
    zone TEXT,
    status TEXT NOT NULL,
    facts_json TEXT,
    agent_version TEXT,
    created_at_ms BIGINT NOT NULL,
    last_heartbeat_ms BIGINT,
    agent_token_hash TEXT,
    server_token TEXT,
    checks_json TEXT,
    checked_at_ms BIGINT
);
CREATE INDEX IF NOT EXISTS hosts_status_heartbeat ON hosts (status, last_heartbeat_ms);

CREATE TABLE IF NOT EXISTS users (
    name TEXT NOT NULL PRIMARY KEY,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    must_change_password INTEGER NOT NULL,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT NOT NULL PRIMARY KEY,
    user_name TEXT NOT NULL REFERENCES users (name),
    source TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    last_seen_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions (user_name);

CREATE TABLE IF NOT EXISTS api_tokens (
    id TEXT NOT NULL PRIMARY KEY,
    user_name TEXT NOT NULL REFERENCES users (name),
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at_ms BIGINT NOT NULL,
    last_used_ms BIGINT
);
CREATE INDEX IF NOT EXISTS api_tokens_user ON api_tokens (user_name);

CREATE TABLE IF NOT EXISTS login_failures (
    source TEXT NOT NULL PRIMARY KEY,
    failures INTEGER NOT NULL,
    first_failure_ms BIGINT NOT NULL,
    locked_until_ms BIGINT
);

CREATE TABLE IF NOT EXISTS audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms BIGINT NOT NULL,
    actor TEXT NOT NULL,
    source TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail_json TEXT NOT NULL,
    outcome TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS settings (
    setting_key TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS tasks (
    id TEXT NOT NULL PRIMARY KEY,
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    target TEXT NOT NULL,
    status TEXT NOT NULL,
    phase TEXT NOT NULL,
    cancel_requested INTEGER NOT NULL,
    params_json TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    finished_at_ms BIGINT
);
CREATE INDEX IF NOT EXISTS tasks_created ON tasks (created_at_ms, id);
CREATE INDEX IF NOT EXISTS tasks_status ON tasks (status);
CREATE INDEX IF NOT EXISTS tasks_target ON tasks (target);

CREATE TABLE IF NOT EXISTS task_steps (
    task_id TEXT NOT NULL REFERENCES tasks (id),
    step_key TEXT NOT NULL,
    seq BIGINT NOT NULL,
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    params_json TEXT NOT NULL,
    deps_json TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    timeout_ms BIGINT NOT NULL,
    not_before_ms BIGINT NOT NULL,
    lease_owner TEXT,
    lease_expires_ms BIGINT,
    started_at_ms BIGINT,
    finished_at_ms BIGINT,
    output_json TEXT,
    error TEXT,
    PRIMARY KEY (task_id, step_key)
);

CREATE TABLE IF NOT EXISTS step_logs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT NOT NULL REFERENCES tasks (id),
    step_key TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    at_ms BIGINT NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS step_logs_task ON step_logs (task_id, id);
CREATE INDEX IF NOT EXISTS step_logs_task_step ON step_logs (task_id, step_key, id);
