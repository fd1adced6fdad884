-- Regions (issue 13): a host belongs to a region (an IDC or a site: a group
-- of zones) as well as a zone; NULL is the default region. A cluster lives
-- in one region; standby clusters in others.
-- Idempotent like 0005. Keep in step with ../sqlite/0010_regions.sql.

ALTER TABLE hosts ADD COLUMN IF NOT EXISTS region VARCHAR(255);
