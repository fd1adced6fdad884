-- Alerting: rules, silences, channels and their delivery status as JSON
-- documents keyed by kind and name (the server owns their shape), and
-- alarms with the columns their listings filter and sort on.
-- Keep in step with ../mysql/0007_alerts.sql.

CREATE TABLE IF NOT EXISTS documents (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    body TEXT NOT NULL,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (kind, name)
);

CREATE TABLE IF NOT EXISTS alarms (
    id TEXT NOT NULL PRIMARY KEY,
    rule TEXT NOT NULL,
    state TEXT NOT NULL,
    started_ms BIGINT NOT NULL,
    ended_ms BIGINT,
    body TEXT NOT NULL
);

CREATE INDEX IF NOT EXISTS alarms_by_state ON alarms (state, started_ms);
CREATE INDEX IF NOT EXISTS alarms_by_start ON alarms (started_ms);
