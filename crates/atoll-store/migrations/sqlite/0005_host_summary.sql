-- Summary columns for host listings, so `GET /api/v1/hosts` never reads
-- facts_json or checks_json (issue 3: parsing 1000 hosts' facts cost most of
-- a listing). Written together with facts_json and checks_json; backfilled
-- here from them. Keep in step with ../mysql/0005_host_summary.sql.

ALTER TABLE hosts ADD COLUMN cpu_cores BIGINT;
ALTER TABLE hosts ADD COLUMN memory_bytes BIGINT;
ALTER TABLE hosts ADD COLUMN clock_offset_ms BIGINT;
ALTER TABLE hosts ADD COLUMN check_worst TEXT;
ALTER TABLE hosts ADD COLUMN check_profile TEXT;

UPDATE hosts SET
    cpu_cores = json_extract(facts_json, '$.cpu.cores'),
    memory_bytes = json_extract(facts_json, '$.memory_bytes'),
    clock_offset_ms = json_extract(facts_json, '$.clock_offset_ms')
WHERE facts_json IS NOT NULL AND json_valid(facts_json);

UPDATE hosts SET
    check_worst = json_extract(checks_json, '$.worst'),
    check_profile = json_extract(checks_json, '$.profile')
WHERE checks_json IS NOT NULL AND json_valid(checks_json);
