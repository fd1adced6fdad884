-- Summary columns for host listings, so `GET /api/v1/hosts` never reads
-- facts_json or checks_json (issue 3: parsing 1000 hosts' facts cost most of
-- a listing). Written together with facts_json and checks_json; backfilled
-- here from them. Keep in step with ../sqlite/0005_host_summary.sql.
-- Idempotent, like 0001: ADD COLUMN IF NOT EXISTS (MariaDB), and the
-- backfill sets the same values when it runs again.

ALTER TABLE hosts
    ADD COLUMN IF NOT EXISTS cpu_cores BIGINT,
    ADD COLUMN IF NOT EXISTS memory_bytes BIGINT,
    ADD COLUMN IF NOT EXISTS clock_offset_ms BIGINT,
    ADD COLUMN IF NOT EXISTS check_worst VARCHAR(16),
    ADD COLUMN IF NOT EXISTS check_profile VARCHAR(255);

UPDATE hosts SET
    cpu_cores = JSON_VALUE(facts_json, '$.cpu.cores'),
    memory_bytes = JSON_VALUE(facts_json, '$.memory_bytes'),
    clock_offset_ms = JSON_VALUE(facts_json, '$.clock_offset_ms')
WHERE facts_json IS NOT NULL AND JSON_VALID(facts_json);

UPDATE hosts SET
    check_worst = JSON_VALUE(checks_json, '$.worst'),
    check_profile = JSON_VALUE(checks_json, '$.profile')
WHERE checks_json IS NOT NULL AND JSON_VALID(checks_json);
