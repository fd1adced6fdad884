-- Alerting: rules, silences, channels and their delivery status as JSON
-- documents keyed by kind and name (the server owns their shape), and
-- alarms with the columns their listings filter and sort on.
-- Keep in step with ../sqlite/0007_alerts.sql. Idempotent.

CREATE TABLE IF NOT EXISTS documents (
    kind VARCHAR(64) NOT NULL,
    name VARCHAR(255) NOT NULL,
    body MEDIUMTEXT NOT NULL,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (kind, name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS alarms (
    id VARCHAR(64) NOT NULL PRIMARY KEY,
    rule VARCHAR(255) NOT NULL,
    state VARCHAR(16) NOT NULL,
    started_ms BIGINT NOT NULL,
    ended_ms BIGINT NULL,
    body MEDIUMTEXT NOT NULL,
    KEY alarms_by_state (state, started_ms),
    KEY alarms_by_start (started_ms)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
